// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startStress } from '../helpers/stress.js';
import { neighbourOf, type Neighbour } from '../helpers/neighbour.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Issue 20, promise B: one session driving a shared resource past its bound (here descriptors at
// RLIMIT_NOFILE) is that session's failure alone: another session's run.python stays within 2×
// its idle time (ratios of medians measured in this run; neighbour-flood.test.ts does the same for
// the payload memory of large requests and replies). What is not held yet on 2 cores — a fork
// bomb at the pids limit, an output flood, calls at once again and again, which take a neighbour
// 1.5–5.7× its idle time with no fairness between sessions on the worker's event loop — is
// measured by make bench (bench/neighbourBench.ts), not asserted here.

const BOUND = 2;
const RUNS = 40;

let worker: RunningWorker;
let neighbour: Neighbour;
let idle = NaN;

before(async () => {
  worker = await startWorker({ env: { WORKER_LOG_LEVEL: 'info', WORKER_MAX_PROCESSES: '64' } });
  neighbour = await neighbourOf(worker);
  await neighbour.p50(RUNS); // warm
  idle = await neighbour.p50(RUNS);
});
after(async () => {
  neighbour?.close();
  await worker?.stop();
});

/** Runs `code` in a fresh attacker session, again and again, and measures the neighbour once it is under way. */
async function underStress(what: string, tool: 'run.python' | 'run.shell', code: string): Promise<void> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'attacker' });
  const stress = startStress(worker.address, sessionId, tool, code);
  try {
    await stress.ready;
    const busy = await neighbour.p50(RUNS);
    console.log(`# ${what}: neighbour print(1) p50 ${idle.toFixed(1)} ms idle, ${busy.toFixed(1)} ms under it (${(busy / idle).toFixed(2)}×)`);
    assert.ok(busy <= BOUND * idle, `${what}: p50 ${busy.toFixed(1)} ms against ${idle.toFixed(1)} ms idle`);
  } finally {
    await stress.stop();
    await worker.sessions.destroySession({ sessionId });
  }
}

test(`descriptors: a session holding all the descriptors it may leaves a neighbour's run.python within ${BOUND}× its idle p50`, async () => {
  await underStress(
    'descriptors',
    'run.python',
    [
      'import os, socket, time',
      'held = []',
      'try:',
      '    while True:',
      "        held.append(os.open('/dev/null', os.O_RDONLY))",
      '        held.append(socket.socket())',
      'except OSError:',
      '    pass',
      "print('ready', len(held), flush=True)",
      'time.sleep(600)',
    ].join('\n'),
  );
});
