import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { SessionState, TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { runTask, runTool, statusOf } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// The reference's "Complete Workflow Example", checkpoint step aside, against a real worker.
let index: PackageIndex;
let worker: RunningWorker;

before(async () => {
  index = await servePackageIndex([
    {
      name: 'tinyrequests',
      version: '2.31.0',
      files: { 'tinyrequests/__init__.py': "__version__ = '2.31.0'\nfrom tinydep import ANSWER\n" },
      requires: ['tinydep>=1.0'],
    },
    { name: 'tinydep', version: '1.2.0', files: { 'tinydep/__init__.py': 'ANSWER = 42\n' } },
  ]);
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url } });
});

after(async () => {
  await worker?.stop();
  await index?.close();
});

test('complete workflow: create, write, install, run, status, destroy', async () => {
  // 1. Create session
  const created = await worker.sessions.createSession({ workspaceId: 'project-123', userId: 'user-456' });
  assert.match(created.sessionId, /^session-[A-Za-z0-9_-]{16,}$/);
  assert.equal(created.state, SessionState.SESSION_STATE_READY);
  assert.ok(created.workerId.length > 0);
  assert.ok(Math.abs(created.createdAtMs - Date.now()) < 60_000);
  const sessionId = created.sessionId;

  // 2. Write a Python file
  const written = await runTool(worker.tasks, sessionId, 'fs.write', { path: 'main.py', contents: "print('Hello from Worker!')" });
  assert.deepEqual(written, { path: 'main.py', bytes_written: '27' });

  // 3. Install packages (from the index this test serves on loopback)
  const install = await runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'tinyrequests' } });
  assert.equal(install.code, Status.OK, install.error?.details);
  assert.equal(install.result?.status, TaskStatus.STATUS_SUCCESS);
  assert.equal(install.result?.outputs.installed, 'tinyrequests');
  assert.match(install.result?.outputs.stdout ?? '', /Successfully installed tinydep-1.2.0 tinyrequests-2.31.0/);
  assert.ok(
    install.logs.some((l) => l.source === 'pip' && /Successfully installed/.test(l.message)),
    'pip output streams as LogEntry',
  );
  assert.ok(install.progress.length >= 2, 'pkg.install reports progress');
  assert.ok(
    index.requests.some((r) => r.startsWith('/simple/tinyrequests')),
    'the configured index was used',
  );

  // 4. Execute Python code that uses the package and the file written above
  const result = await runTool(worker.tasks, sessionId, 'run.python', { code: 'import tinyrequests, main\nprint(tinyrequests.__version__)' });
  assert.equal(result.stdout, 'Hello from Worker!\n2.31.0\n');
  assert.equal(result.stderr, '');
  assert.equal(result.exit_code, '0');

  // Reading and listing what is there
  const read = await runTool(worker.tasks, sessionId, 'fs.read', { path: 'main.py' });
  assert.equal(read.contents, "print('Hello from Worker!')");
  assert.equal(read.size, '27');
  const listing = await runTool(worker.tasks, sessionId, 'fs.list', { path: '.' });
  assert.equal(listing.entries, '__pycache__/,main.py');
  const entries = JSON.parse(listing.entries_json!) as { name: string; type: string }[];
  assert.deepEqual(
    entries.map((e) => [e.name, e.type]),
    [
      ['__pycache__', 'directory'],
      ['main.py', 'file'],
    ],
  );

  const echoed = await runTool(worker.tasks, sessionId, 'echo', { message: 'Hello, World!' });
  assert.deepEqual(echoed, { message: 'Hello, World!' });

  // Status and capacity along the way
  const status = await worker.sessions.getSessionStatus({ sessionId });
  assert.equal(status.workspaceId, 'project-123');
  assert.equal(status.userId, 'user-456');
  assert.equal(status.state, SessionState.SESSION_STATE_READY);
  assert.equal(status.activeTasks, 0);
  assert.equal(status.recentTasks.length, 6);
  assert.ok((status.usage?.diskBytes ?? 0) >= 27, 'disk usage is measured');
  const capacity = await worker.sessions.getCapacity({});
  assert.deepEqual([capacity.totalSessions, capacity.activeSessions, capacity.availableSessions], [10, 1, 9]);
  assert.equal(capacity.sessions[0]?.sessionId, sessionId);

  // Task status of a finished task
  const taskStatus = await worker.tasks.getTaskStatus({ sessionId, taskId: status.recentTasks[0] });
  assert.equal(taskStatus.status, TaskStatus.STATUS_SUCCESS);
  assert.ok(taskStatus.endTimeMs >= taskStatus.startTimeMs && taskStatus.startTimeMs > 0);

  // 6. Destroy session
  const destroyed = await worker.sessions.destroySession({ sessionId });
  assert.equal(destroyed.success, true);
  assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId })), Status.NOT_FOUND);
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, 0);
});

test('every message of a task carries its task_id, generated when the request has none', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'ids' });
  const given = await runTask(worker.tasks, { sessionId, taskId: 'my-task-1', toolName: 'run.python', arguments: { code: 'print(1)' } });
  assert.ok(given.messages.length >= 3);
  assert.ok(given.messages.every((m) => m.taskId === 'my-task-1'));
  const generated = await runTask(worker.tasks, { sessionId, toolName: 'echo', arguments: { message: 'x' } });
  const id = generated.messages[0]!.taskId;
  assert.match(id, /^task-[A-Za-z0-9_-]{16,}$/);
  assert.ok(generated.messages.every((m) => m.taskId === id));
  await worker.sessions.destroySession({ sessionId });
});

test('the session environment is its own: packages of one session are not visible in another', async () => {
  const a = await worker.sessions.createSession({ workspaceId: 'a' });
  const b = await worker.sessions.createSession({ workspaceId: 'b', config: { env: { GREETING: 'hi' } } });
  await runTool(worker.tasks, a.sessionId, 'pkg.install', { requirements: 'tinydep==1.2.0\n# a comment\n\n' });
  const inA = await runTool(worker.tasks, a.sessionId, 'run.python', { code: 'import tinydep; print(tinydep.ANSWER)' });
  assert.equal(inA.stdout, '42\n');
  const inB = await runTask(worker.tasks, { sessionId: b.sessionId, toolName: 'run.python', arguments: { code: 'import tinydep' } });
  assert.equal(inB.result?.status, TaskStatus.STATUS_FAILURE);
  assert.match(inB.result?.outputs.stderr ?? '', /ModuleNotFoundError/);
  // The session's env is given to its code; the worker's own environment is not.
  const env = await runTool(worker.tasks, b.sessionId, 'run.python', {
    code: 'import os; print(os.environ.get("GREETING"), os.environ.get("WORKER_PIP_INDEX_URL"), os.getcwd().endswith("workspace"))',
  });
  assert.equal(env.stdout, 'hi None True\n');
  await worker.sessions.destroySession({ sessionId: a.sessionId });
  await worker.sessions.destroySession({ sessionId: b.sessionId });
});

test('two pkg.install tasks at once in one session both succeed (pip runs one at a time per environment)', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'parallel-pip' });
  const [a, b] = await Promise.all([
    runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'tinydep' } }),
    runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'tinyrequests' } }),
  ]);
  assert.equal(a.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(a.result));
  assert.equal(b.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(b.result));
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'import tinyrequests, tinydep; print(tinydep.ANSWER)' })).stdout, '42\n');
  await worker.sessions.destroySession({ sessionId });
});
