import { startWorker } from '../tests/helpers/worker.js';
import { neighbourBench } from './neighbourBench.js';

/** `node dist/bench/neighbourMain.js [part of an attack's name]`: the neighbour rows alone, on a worker of their own. */

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
// WORKER_NODE_OPTIONS go to the worker's node (`--require` a profiler).
const worker = await startWorker({ env: { WORKER_LOG_LEVEL: 'info', WORKER_SESSION_IDLE_SECONDS: '0', NODE_OPTIONS: process.env.WORKER_NODE_OPTIONS } });
try {
  for (const m of await neighbourBench(worker, process.argv[2])) {
    const idle = median(m.idleMs);
    const busy = median(m.underAttackMs);
    process.stdout.write(`${m.attack}: idle p50 ${idle.toFixed(1)} ms, under attack p50 ${busy.toFixed(1)} ms, ratio ${(busy / idle).toFixed(2)}\n`);
  }
} finally {
  await worker.stop();
}
