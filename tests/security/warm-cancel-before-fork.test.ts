import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, describeCall, runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "Cancelled before it was forked": a warm call aborted (cancel, timeout) before the zygote has
// said `forked` makes the worker send {op:"kill"}, and the zygote kills the child's process
// group. When the zygote reads `run` and `kill` together (it was busy, throttled, or stopped),
// it hands the call to a child that has not called setsid() yet (the child it forked ahead, or
// a fresh one) and kills at once: there is no such group yet, the kill misses, and the child
// stays, blocked on its gate in the session's cgroup (outside every task group), for as long as
// the warm interpreter lives. Nothing of a task may outlive it.
//
// The zygote is held busy here by code it imported (sitecustomize, from the workspace): a thread
// that keeps the GIL for 2.5 s (a libc sleep through ctypes.PyDLL, which does not release it)
// each time a file appears. A stopped zygote (SIGSTOP) would be replaced at once
// (warm-stopped.test.ts); a busy one is given 5 s.
//
// Each forked-ahead child (the zygote forks one when a call goes) is slow to start here, as on a
// loaded host: it sleeps 4 s before its setsid(). So from the second round on, the held call is
// handed a forked-ahead child with no group of its own yet (the listing before made it), and the
// listing's own forked-ahead child is listed before it has named itself codegen-ahead. Counting every zygote child
// named python once failed this file beside another one ("round 1: 1 left": pid 7, the
// listing's forked-ahead child); what counts is the zygote's children older than the listing.
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
  '    _setsid = os.setsid',
  '    def _late_setsid():',
  '        caller = sys._getframe(1)',
  '        while caller is not None and caller.f_code.co_name != "ensure_ahead":',
  '            caller = caller.f_back',
  '        if caller is not None:',
  '            time.sleep(4)',
  '        return _setsid()',
  '    os.setsid = _late_setsid',
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

  // The zygote's children (ppid 2) left over, whatever their name: those older than the shell
  // asking ($$: pid 2 forked it after every earlier call's child), but for a zombie (dead, its
  // reaping due). The child forked ahead when the shell went is younger. Rows: pid, $$, state, ppid, name.
  const leftovers = async (): Promise<string[]> => {
    const ps = await callTool(w.tasks, sessionId, 'run.shell', {
      command: 'for p in /proc/[0-9]*; do echo "${p#/proc/} $$ $(cut -d" " -f3,4 $p/stat) $(cat $p/comm)"; done',
    });
    assert.equal(ps.code, Status.OK, describeCall(ps));
    const rows = (ps.result?.outputs.stdout ?? '').split('\n').map((l) => l.split(' '));
    return rows.filter(([pid, shell, state, ppid]) => ppid === '2' && state !== 'Z' && Number(pid) < Number(shell)).map((r) => r.join(' '));
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
