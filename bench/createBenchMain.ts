import { startWorker } from '../tests/helpers/worker.js';
import { timed } from './timing.js';

/** `node dist/bench/createBenchMain.js`: the session create rows alone (60 back to back, production spares). */

const quantile = (v: number[], q: number) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * q))] ?? NaN;
const worker = await startWorker({
  env: {
    WORKER_MAX_SESSIONS: '300',
    WORKER_LOG_LEVEL: 'info',
    WORKER_SESSION_IDLE_SECONDS: '0',
    WORKER_LANGUAGES: undefined,
    WORKER_SPARE_SESSIONS: process.env.SPARES,
  },
});
try {
  // The client's connection is made first: the first call on a new channel waits for TCP and
  // HTTP/2 set-up (tens of milliseconds here), which is the client's start, not a create.
  await worker.sessions.getCapacity({});
  for (let round = 0; round < 2; round++) {
    const created: string[] = [];
    const create = await timed(60, async () => created.push((await worker.sessions.createSession({ workspaceId: 'bench' })).sessionId));
    for (const sessionId of created) await worker.sessions.destroySession({ sessionId });
    process.stdout.write(
      `create: p50 ${quantile(create, 0.5).toFixed(1)} p95 ${quantile(create, 0.95).toFixed(1)} p99 ${quantile(create, 0.99).toFixed(1)} ms [${create.map((x) => x.toFixed(0)).join(' ')}]\n`,
    );
    await new Promise((r) => setTimeout(r, 3000));
  }
} finally {
  await worker.stop();
}
