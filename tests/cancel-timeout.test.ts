import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { isAlive, runTask, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;

before(async () => {
  worker = await startWorker();
});

after(async () => worker?.stop());

// Starts a child, and a grandchild that leaves the process group and the tree (setsid + double
// fork), prints their pids, then sleeps: what must all be gone when the task ends.
const SPAWNER = `
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode()); os.close(w)
        time.sleep(60); os._exit(0)
    os._exit(0)
os.close(w)
daemon = int(os.read(r, 32))
print("pids", os.getpid(), child.pid, daemon, flush=True)
time.sleep(60)
`;

/** Runs SPAWNER and resolves with its pids as soon as it prints them, and the whole run. */
function spawnTree(sessionId: string, taskId: string, timeoutSeconds = 0, signal?: AbortSignal) {
  let resolvePids!: (pids: number[]) => void;
  const pids = new Promise<number[]>((resolve) => (resolvePids = resolve));
  const done = (async () => {
    const messages = [];
    let result;
    let code = Status.OK;
    try {
      for await (const m of worker.tasks.executeTask({ sessionId, taskId, toolName: 'run.python', arguments: { code: SPAWNER }, constraints: { timeoutSeconds } }, { signal })) {
        messages.push(m);
        if (m.payload?.$case === 'log' && m.payload.value.message.startsWith('pids ')) resolvePids(m.payload.value.message.split(' ').slice(1).map(Number));
        if (m.payload?.$case === 'result') result = m.payload.value;
      }
    } catch (err) {
      code = (err as { code: Status }).code;
    }
    return { result, code, endedAt: Date.now() };
  })();
  return { pids, done };
}

test('CancelTask ends a sleeping task and its whole process tree within 2 s', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'cancel' });
  const { pids, done } = spawnTree(sessionId, 'sleeper');
  const tree = await pids;
  assert.equal(tree.length, 3);
  assert.ok(tree.every(isAlive), 'the tree runs before the cancel');
  const cancelledAt = Date.now();
  assert.deepEqual(await worker.tasks.cancelTask({ sessionId, taskId: 'sleeper' }), { cancelled: true, state: 'canceled' });
  const { result, code, endedAt } = await done;
  assert.ok(endedAt - cancelledAt < 2000, `ended ${endedAt - cancelledAt} ms after CancelTask`);
  assert.equal(code, Status.CANCELLED);
  assert.equal(result?.status, TaskStatus.STATUS_CANCELLED);
  for (const pid of tree) assert.equal(isAlive(pid), false, `process ${pid} outlived the task`);
  await worker.sessions.destroySession({ sessionId });
});

test('a 1 s timeout ends a sleeping task and its whole process tree within 2 s of the timeout', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'timeout' });
  const startedAt = Date.now();
  const { pids, done } = spawnTree(sessionId, 'sleeper', 1);
  const tree = await pids;
  const { result, code, endedAt } = await done;
  assert.ok(endedAt - startedAt < 3000, `ended ${endedAt - startedAt - 1000} ms after its 1 s timeout`);
  assert.equal(code, Status.DEADLINE_EXCEEDED);
  assert.equal(result?.status, TaskStatus.STATUS_TIMEOUT);
  assert.match(result?.outputs.stdout ?? '', /^pids /);
  for (const pid of tree) assert.equal(isAlive(pid), false, `process ${pid} outlived the task`);
  await worker.sessions.destroySession({ sessionId });
});

test('a client that goes away cancels its task; nothing it started keeps running', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'gone' });
  const client = new AbortController();
  const { pids, done } = spawnTree(sessionId, 'orphan', 0, client.signal);
  const tree = await pids;
  client.abort();
  await done;
  await waitFor(async () => (await worker.tasks.getTaskStatus({ sessionId, taskId: 'orphan' })).status === TaskStatus.STATUS_CANCELLED, 2000);
  await waitFor(() => tree.every((pid) => !isAlive(pid)), 2000);
  await worker.sessions.destroySession({ sessionId });
});

test('background processes a finished task left behind are ended with it', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'leftovers' });
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import subprocess, sys\np = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])\nprint(p.pid)' } });
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
  assert.equal(isAlive(Number(run.result?.outputs.stdout)), false);
  await worker.sessions.destroySession({ sessionId });
});

test('DestroySession cancels running tasks and kills their processes', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'destroy' });
  const { pids, done } = spawnTree(sessionId, 'busy');
  const tree = await pids;
  await worker.sessions.destroySession({ sessionId });
  const { result, code } = await done;
  assert.equal(code, Status.CANCELLED);
  assert.equal(result?.status, TaskStatus.STATUS_CANCELLED);
  for (const pid of tree) assert.equal(isAlive(pid), false);
});
