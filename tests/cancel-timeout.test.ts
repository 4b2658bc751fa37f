// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { PYTHON_CASE } from './helpers/languages.js';
import { processesMarked, runTask, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;

before(async () => {
  worker = await startWorker();
});

after(async () => worker?.stop());

// Starts a child, and a grandchild that leaves the process group and the tree (setsid + double
// fork), then sleeps: all of which must be gone when the task ends.
const SPAWNER = PYTHON_CASE.spawner;

/**
 * A session whose every process carries a mark the test can find on the host. `leftovers()`
 * lists marked processes beyond those the session keeps between tasks (its warm interpreter,
 * measured after a first call).
 */
async function markedSession(workspaceId: string) {
  const mark = randomBytes(8).toString('hex');
  const { sessionId } = await worker.sessions.createSession({ workspaceId, config: { env: { CODEGEN_TEST_MARK: mark } } });
  await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'pass' } });
  const marked = () => processesMarked('CODEGEN_TEST_MARK', mark);
  const resident = new Set(marked());
  return { sessionId, marked, leftovers: () => marked().filter((pid) => !resident.has(pid)) };
}

/** Runs SPAWNER; `started` resolves once the whole tree runs, `done` with how the call ended. */
function spawnTree(sessionId: string, taskId: string, timeoutSeconds = 0, signal?: AbortSignal) {
  let markStarted!: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const done = (async () => {
    let result;
    let code = Status.OK;
    try {
      for await (const m of worker.tasks.executeTask(
        { sessionId, taskId, toolName: 'run.python', arguments: { code: SPAWNER }, constraints: { timeoutSeconds } },
        { signal },
      )) {
        if (m.payload?.$case === 'log' && m.payload.value.message.split('\n').includes('tree started')) markStarted();
        if (m.payload?.$case === 'result') result = m.payload.value;
      }
    } catch (err) {
      code = (err as { code: Status }).code;
    }
    return { result, code, endedAt: Date.now() };
  })();
  return { started, done };
}

test('CancelTask ends a sleeping task and its whole process tree within 2 s', async () => {
  const { sessionId, leftovers } = await markedSession('cancel');
  const { started, done } = spawnTree(sessionId, 'sleeper');
  await started;
  assert.ok(leftovers().length >= 3, `the tree runs before the cancel (${leftovers().length} processes)`);
  const cancelledAt = Date.now();
  assert.deepEqual(await worker.tasks.cancelTask({ sessionId, taskId: 'sleeper' }), { cancelled: true, state: 'canceled' });
  const { result, code, endedAt } = await done;
  assert.ok(endedAt - cancelledAt < 2000, `ended ${endedAt - cancelledAt} ms after CancelTask`);
  assert.equal(code, Status.CANCELLED);
  assert.equal(result?.status, TaskStatus.STATUS_CANCELLED);
  assert.deepEqual(leftovers(), [], 'no process of the task outlived it');
  await worker.sessions.destroySession({ sessionId });
});

test('a 1 s timeout ends a sleeping task and its whole process tree within 2 s of the timeout', async () => {
  const { sessionId, leftovers } = await markedSession('timeout');
  const startedAt = Date.now();
  const { started, done } = spawnTree(sessionId, 'sleeper', 1);
  await started;
  const { result, code, endedAt } = await done;
  assert.ok(endedAt - startedAt < 3000, `ended ${endedAt - startedAt - 1000} ms after its 1 s timeout`);
  assert.equal(code, Status.DEADLINE_EXCEEDED);
  assert.equal(result?.status, TaskStatus.STATUS_TIMEOUT);
  assert.equal(result?.outputs.killed_by, 'timeout');
  assert.equal(result?.outputs.stdout, 'tree started\n');
  assert.deepEqual(leftovers(), [], 'no process of the task outlived it');
  await worker.sessions.destroySession({ sessionId });
});

test('a client that goes away cancels its task; nothing it started keeps running', async () => {
  const { sessionId, leftovers } = await markedSession('gone');
  const client = new AbortController();
  const { started, done } = spawnTree(sessionId, 'orphan', 0, client.signal);
  await started;
  client.abort();
  await done;
  await waitFor(async () => (await worker.tasks.getTaskStatus({ sessionId, taskId: 'orphan' })).status === TaskStatus.STATUS_CANCELLED, 2000);
  await waitFor(() => leftovers().length === 0, 2000);
  await worker.sessions.destroySession({ sessionId });
});

test('background processes a finished task left behind are ended with it', async () => {
  const { sessionId, leftovers } = await markedSession('leftovers');
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import subprocess, sys\nsubprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])\nprint("left one running")' },
  });
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
  assert.deepEqual(leftovers(), []);
  await worker.sessions.destroySession({ sessionId });
});

test('DestroySession cancels running tasks and kills their processes', async () => {
  const { sessionId, marked } = await markedSession('destroy');
  const { started, done } = spawnTree(sessionId, 'busy');
  await started;
  await worker.sessions.destroySession({ sessionId });
  const { result, code } = await done;
  assert.equal(code, Status.CANCELLED);
  assert.equal(result?.status, TaskStatus.STATUS_CANCELLED);
  assert.deepEqual(marked(), [], 'nothing of the session is left, its warm interpreter included');
});
