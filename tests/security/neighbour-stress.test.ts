// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startStress } from '../helpers/stress.js';
import { neighbourOf, type Neighbour } from '../helpers/neighbour.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Issue 20, promise B: one session driving a shared resource past its bound (processes at the
// pids limit, descriptors at RLIMIT_NOFILE, output as fast as it can print, task groups by calls
// at once) is that session's failure alone: another session's run.python stays within 2× its idle
// time (ratios of medians measured in this run; neighbour-flood.test.ts does the same for the
// payload memory of large requests and replies).

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
async function underStress(what: string, tool: 'run.python' | 'run.shell', code: string, copies = 1): Promise<void> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'attacker' });
  const stress = startStress(worker.address, sessionId, tool, code, copies);
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

// Not held yet (issue 20's closing note): these run, print their ratio, and are reported as TODO
// rather than failing the suite. The attacker's session holds a whole core (the default CPU
// limit on 2 cores) and the worker serves every session's calls on one event loop with no
// fairness between sessions: over runs here, 16 calls at once took a neighbour 3.3–5.7× its idle
// time, an output flood 2.1–3.0×, a fork bomb at its pids limit 1.5–1.9× (2.5× with no CPU limit).
const NOT_YET = { todo: 'not held yet on this 2-core machine (issue 20)' };

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

test(`processes: a fork bomb at the session's pids limit leaves a neighbour's run.python within ${BOUND}× its idle p50`, NOT_YET, async () => {
  await underStress(
    'fork bomb',
    'run.python',
    ['import os', "print('ready', flush=True)", 'while True:', '    try:', '        os.fork()', '    except OSError:', '        pass'].join('\n'),
  );
});

test(`output: a task printing short lines as fast as it can leaves a neighbour's run.python within ${BOUND}× its idle p50`, NOT_YET, async () => {
  await underStress('output flood', 'run.python', ["print('ready', flush=True)", 'while True:', "    print('x' * 60)"].join('\n'));
});

test(`calls at once: a session making 16 calls at once, again and again, leaves a neighbour's run.python within ${BOUND}× its idle p50`, NOT_YET, async () => {
  await underStress('calls at once', 'run.shell', 'echo ready', 16);
});
