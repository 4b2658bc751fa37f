import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, describeCall, runTaskWithin } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "A shell forked from Python": run.shell in a session with a warm interpreter is exec'd by a
// child of the Python zygote, and Python ignores SIGPIPE and SIGXFSZ (SIG_IGN survives execve).
// The shell and everything it starts then never die of a closed pipe: `producer | head -n1`
// spins on EPIPE, printing errors, until the task's timeout (a cold run.shell ends at once).
// The exec'd command must start with the dispositions a cold one has: none ignored.

const MARK = `warm-signals-${randomBytes(6).toString('hex')}`;
let worker: RunningWorker;
let sessionId: string;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
  ({ sessionId } = await worker.sessions.createSession({ workspaceId: 'signals', config: { env: { CODEGEN_TEST_MARK: MARK } } }, { deadline: 20_000 }));
  const warm = await callTool(worker.tasks, sessionId, 'run.python', { code: 'print(42)' });
  assert.equal(warm.result?.outputs.stdout, '42\n', describeCall(warm));
});
after(async () => stopHard(worker, 5_000, ['CODEGEN_TEST_MARK', MARK]));

test("a warm run.shell starts with the signals ignored that a cold one has ignored (what the worker inherited), none of Python's", async () => {
  const ignored = 'grep SigIgn /proc/self/status';
  const run = await callTool(worker.tasks, sessionId, 'run.shell', { command: ignored });
  assert.equal(run.code, Status.OK, describeCall(run));
  const cold = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0', WORKER_WARM_INTERPRETER: 'false' } });
  try {
    const { sessionId: coldSession } = await cold.sessions.createSession({ workspaceId: 'signals-cold' });
    const coldRun = await callTool(cold.tasks, coldSession, 'run.shell', { command: ignored });
    assert.match(coldRun.result?.outputs.stdout ?? '', /^SigIgn:\t[0-9a-f]{16}\n$/, describeCall(coldRun));
    assert.equal(run.result?.outputs.stdout, coldRun.result?.outputs.stdout, describeCall(run));
    // SIGPIPE (13) and SIGXFSZ (25), which Python ignores, are not.
    const mask = BigInt(`0x${/[0-9a-f]{16}/.exec(run.result?.outputs.stdout ?? '')?.[0] ?? '0'}`);
    assert.equal(mask & ((1n << 12n) | (1n << 24n)), 0n);
  } finally {
    await cold.stop();
  }
});

test('a warm run.shell pipeline ends when its reader does, not at the timeout', async () => {
  const started = Date.now();
  const run = await runTaskWithin(
    worker.tasks,
    { sessionId, toolName: 'run.shell', arguments: { command: 'while :; do echo y; done | head -n1; echo done' }, constraints: { timeoutSeconds: 10 } },
    30_000,
  );
  const seen = JSON.stringify(run.result).slice(0, 600);
  assert.equal(run.result?.outputs.stdout, 'y\ndone\n', seen);
  assert.equal(run.result?.exitCode, 0, seen);
  assert.ok(Date.now() - started < 8_000, `took ${Date.now() - started} ms`);
});
