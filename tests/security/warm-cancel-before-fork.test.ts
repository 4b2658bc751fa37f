// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, describeCall, runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "Cancelled before it was forked": a warm call aborted (cancel, timeout) before the zygote has
// said `forked` makes the worker send {op:"kill"}, and the zygote kills the child's process
// group. When the zygote reads `run` and `kill` together (it was busy, throttled, or stopped),
// it forks and kills at once, before the child has called setsid(): there is no such group
// yet, the kill misses, and the child stays, blocked on its gate in the session's cgroup
// (outside every task group), for as long as the warm interpreter lives. Nothing of a task may
// outlive it.
//
// The zygote is held busy here by code it imported (sitecustomize, from the workspace): a thread
// that keeps the GIL for 2.5 s (a libc sleep through ctypes.PyDLL, which does not release it)
// each time a file appears. A stopped zygote (SIGSTOP) would be replaced at once
// (warm-stopped.test.ts); a busy one is given 5 s.
const HOLD = [
  'import ctypes, os, sys, threading, time',
  'if sys.argv[:1] == ["-c"]:',
  '    def _hold():',
  '        while True:',
  '            if os.path.exists("/workspace/hold"):',
  '                os.remove("/workspace/hold")',
  '                ctypes.PyDLL(None).usleep(2500000)',
  '            time.sleep(0.02)',
  '    threading.Thread(target=_hold, daemon=True).start()',
].join('\n');

const MARK = `cancel-before-fork-${randomBytes(6).toString('hex')}`;
let worker: RunningWorker | undefined;
after(async () => stopHard(worker, 5_000, ['CODEGEN_TEST_MARK', MARK]));

test('a warm call cancelled before the zygote forked leaves no child behind', async (t) => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
  const w = worker;
  const { sessionId } = await w.sessions.createSession(
    { workspaceId: 'cancel', config: { env: { CODEGEN_TEST_MARK: MARK, PYTHONPATH: '/workspace' } } },
    { deadline: 20_000 },
  );
  assert.equal((await callTool(w.tasks, sessionId, 'fs.write', { path: 'sitecustomize.py', contents: HOLD })).code, Status.OK);
  const warm = await callTool(w.tasks, sessionId, 'run.python', { code: 'print(42)' });
  assert.equal(warm.result?.outputs.stdout, '42\n', describeCall(warm));

  // Zygote children left over (not the shell asking): forked pythons the worker gave up on.
  const leftovers = async (): Promise<string[]> => {
    const ps = await callTool(w.tasks, sessionId, 'run.shell', {
      command: 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(cut -d" " -f4 $p/stat) $(cat $p/comm)"; done',
    });
    assert.equal(ps.code, Status.OK, describeCall(ps));
    return (ps.result?.outputs.stdout ?? '').split('\n').filter((l) => / 2 python$/.test(l));
  };
  let left: string[] = [];
  for (let round = 0; round < 6 && left.length === 0; round++) {
    // The zygote is held for 2.5 s (the file gone: the hold has begun): the next call's `run`
    // and, after its 1 s timeout, its `kill` wait in the zygote's input, read together.
    assert.equal((await callTool(w.tasks, sessionId, 'fs.write', { path: 'hold', contents: '' })).code, Status.OK);
    await waitFor(async () => (await callTool(w.tasks, sessionId, 'fs.read', { path: 'hold' })).code === Status.NOT_FOUND);
    const cancelled = await runTaskWithin(
      w.tasks,
      { sessionId, toolName: 'run.shell', arguments: { command: 'true' }, constraints: { timeoutSeconds: 1 } },
      20_000,
    );
    assert.equal(cancelled.result?.outputs.killed_by, 'timeout', JSON.stringify(cancelled.result));
    // Asked after the hold, through the same zygote: it has read `run` and `kill` by then.
    left = await leftovers();
    t.diagnostic(`round ${round + 1}: ${left.length} left`);
  }
  assert.deepEqual(left, [], 'a child of a call that timed out before it was forked is still there');
});
