// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, describeCall, processesMarked, runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// Session code may stop, kill or jam its own warm interpreter (the zygote runs as its uid and is
// its code's parent). A zygote that stops answering once wedged the session for good: every
// later run.python or run.shell waited for an answer until its timeout. Now a zygote that does
// not answer is replaced: the next call runs (cold, then on a fresh zygote).

const MARK = `warm-stopped-${randomBytes(6).toString('hex')}`;
let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
});
after(async () => stopHard(worker, 5_000, ['CODEGEN_TEST_MARK', MARK]));

/** A session whose warm interpreter runs; `sitecustomize` is the zygote's own start-up code (from the workspace). */
async function warmSession(workspaceId: string, sitecustomize?: string): Promise<string> {
  const env = sitecustomize === undefined ? {} : { PYTHONPATH: '/workspace' };
  const { sessionId } = await worker.sessions.createSession({ workspaceId, config: { env: { CODEGEN_TEST_MARK: MARK, ...env } } }, { deadline: 20_000 });
  if (sitecustomize !== undefined) {
    const plant = await callTool(worker.tasks, sessionId, 'fs.write', { path: 'sitecustomize.py', contents: sitecustomize });
    assert.equal(plant.code, Status.OK, describeCall(plant));
  }
  const warm = await callTool(worker.tasks, sessionId, 'run.python', { code: 'print(42)' });
  assert.equal(warm.result?.outputs.stdout, '42\n', describeCall(warm));
  return sessionId;
}

/** A call that must succeed with `stdout`, well within its 20 s timeout (which it would otherwise run into). */
async function expectOutput(sessionId: string, toolName: string, args: Record<string, string>, stdout: string): Promise<void> {
  const run = await runTaskWithin(worker.tasks, { sessionId, toolName, arguments: args, constraints: { timeoutSeconds: 20 } }, 40_000);
  const seen = `${Status[run.code]} ${JSON.stringify(run.result)?.slice(0, 600)}`;
  assert.equal(run.code, Status.OK, seen);
  assert.equal(run.result?.outputs.killed_by, undefined, seen);
  assert.equal(run.result?.outputs.stdout, stdout, seen);
}

/** Marked processes stopped by a signal (state T): a stopped zygote left behind. */
function stoppedMarked(): number[] {
  return processesMarked('CODEGEN_TEST_MARK', MARK).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
    } catch {
      return false;
    }
  });
}

test('run.python stopping its warm interpreter (SIGSTOP): that call ends with its own output, the next ones run', async () => {
  const sessionId = await warmSession('stop-python');
  const code = 'import os, signal\nprint("stopping", flush=True)\nos.kill(os.getppid(), signal.SIGSTOP)\nprint("after")';
  await expectOutput(sessionId, 'run.python', { code }, 'stopping\nafter\n');
  await expectOutput(sessionId, 'run.python', { code: 'print(6 * 7)' }, '42\n');
  await expectOutput(sessionId, 'run.shell', { command: 'echo shell' }, 'shell\n');
  await expectOutput(sessionId, 'run.python', { code: 'print("again")' }, 'again\n');
  await waitFor(() => stoppedMarked().length === 0);
  assert.ok(worker.logs.some((l) => /warm interpreter stopped answering/.test(String(l.message))));
});

test('run.shell stopping its warm interpreter (kill -STOP $PPID): the next calls run', async () => {
  const sessionId = await warmSession('stop-shell');
  await expectOutput(sessionId, 'run.shell', { command: 'kill -STOP $PPID; echo stopped' }, 'stopped\n');
  await expectOutput(sessionId, 'run.shell', { command: 'echo next' }, 'next\n');
  await expectOutput(sessionId, 'run.python', { code: 'print("python")' }, 'python\n');
  await waitFor(() => stoppedMarked().length === 0);
});

test('an interpreter stopped between calls (by code it imported) is replaced at the next call', async () => {
  // The zygote imports sitecustomize from the workspace (PYTHONPATH), so session code runs in
  // it: here a thread that stops the zygote once a file appears.
  const sessionId = await warmSession(
    'stop-between',
    [
      'import os, signal, sys, threading, time',
      'if sys.argv[:1] == ["-c"]:',
      '    def _stop_later():',
      '        while not os.path.exists("/workspace/stop"):',
      '            time.sleep(0.02)',
      '        os.remove("/workspace/stop")',
      '        os.kill(os.getpid(), signal.SIGSTOP)',
      '    threading.Thread(target=_stop_later, daemon=True).start()',
    ].join('\n'),
  );
  assert.equal((await callTool(worker.tasks, sessionId, 'fs.write', { path: 'stop', contents: '' })).code, Status.OK);
  await waitFor(() => stoppedMarked().length > 0);
  await expectOutput(sessionId, 'run.python', { code: 'print("next")' }, 'next\n');
  await expectOutput(sessionId, 'run.python', { code: 'print("again")' }, 'again\n');
  await waitFor(() => stoppedMarked().length === 0);
});

test('run.python killing its warm interpreter (SIGKILL): the next calls run', async () => {
  const sessionId = await warmSession('kill-python');
  const killing = await runTaskWithin(
    worker.tasks,
    {
      sessionId,
      toolName: 'run.python',
      arguments: { code: 'import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint("after")' },
      constraints: { timeoutSeconds: 20 },
    },
    40_000,
  );
  assert.equal(killing.result?.outputs.killed_by, undefined, JSON.stringify(killing.result));
  await expectOutput(sessionId, 'run.python', { code: 'print(6 * 7)' }, '42\n');
  await expectOutput(sessionId, 'run.shell', { command: 'echo shell' }, 'shell\n');
});

test('a warm interpreter jammed by a thread holding the GIL is replaced: the next calls run', async () => {
  // A catastrophic regular expression never lets go of the GIL, so the zygote's main loop
  // never runs again: it neither reads its input nor reaps its children.
  const sessionId = await warmSession(
    'jam',
    [
      'import os, re, sys, threading, time',
      'if sys.argv[:1] == ["-c"]:',
      '    def _jam_later():',
      '        while not os.path.exists("/workspace/jam"):',
      '            time.sleep(0.02)',
      '        os.remove("/workspace/jam")',
      '        re.match(r"(a*)*b", "a" * 64)',
      '    threading.Thread(target=_jam_later, daemon=True).start()',
    ].join('\n'),
  );
  assert.equal((await callTool(worker.tasks, sessionId, 'fs.write', { path: 'jam', contents: '' })).code, Status.OK);
  // The call that meets the jam may fail (the zygote may jam after forking its child, before
  // opening its gate: then the child is killed), but ends well before its timeout; the next run.
  const met = await runTaskWithin(
    worker.tasks,
    {
      sessionId,
      toolName: 'run.python',
      arguments: { code: 'import os, time\nwhile os.path.exists("jam"): time.sleep(0.01)\nprint("next")' },
      constraints: { timeoutSeconds: 20 },
    },
    40_000,
  );
  assert.equal(met.code, Status.OK, JSON.stringify(met.result));
  assert.notEqual(met.result?.outputs.killed_by, 'timeout', JSON.stringify(met.result));
  await expectOutput(sessionId, 'run.python', { code: 'print("again")' }, 'again\n');
});
