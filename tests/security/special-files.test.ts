import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ClientError, Status } from 'nice-grpc';
import { processesMarked, runTaskWithin, statusOf, type TaskRequestInput, type TaskRun } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// "A FIFO wedges the worker": fs.read opens a workspace path as root before it looks at what it
// is; opening a FIFO blocks until a writer comes, holding one of libuv's four threadpool threads
// for ever. Five such reads and the worker's every file operation waits behind them. Special
// files (FIFOs, sockets) must be refused before anything blocks on them, and fs.write must not
// replace them.

const GRACE_SECONDS = 2;
const MARK = randomBytes(8).toString('hex');
let worker: RunningWorker;
let sessionId: string;
let workerStderr = '';

/** Runs a task; one that has not answered within `ms` ends DEADLINE_EXCEEDED. */
const run = (request: TaskRequestInput, ms = 5_000): Promise<TaskRun> => runTaskWithin(worker.tasks, request, ms);

function describe(r: TaskRun): string {
  const death = worker.process.exitCode !== null || worker.process.signalCode !== null ? `; the worker exited: ${workerStderr.slice(-800)}` : '';
  return `${Status[r.code]} ${r.error?.details ?? ''} ${JSON.stringify(r.result ?? {}).slice(0, 300)}${death}`;
}

function assertRefused(r: TaskRun, pattern: RegExp | undefined, what: string): void {
  assert.equal(r.code, Status.INVALID_ARGUMENT, `${what}: ${describe(r)}`);
  if (pattern) assert.match(r.error?.details ?? '', pattern, `${what}: ${describe(r)}`);
}

before(async () => {
  worker = await startWorker({ env: { WORKER_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS), WORKER_SPARE_SESSIONS: '1' } });
  worker.process.stderr!.on('data', (d: Buffer) => (workerStderr = (workerStderr + d.toString()).slice(-20_000)));
  sessionId = (await worker.sessions.createSession({ workspaceId: 'fifo', config: { env: { CODEGEN_TEST_MARK: MARK } } }, { deadline: 10_000 })).sessionId;
  const made = await run(
    {
      sessionId,
      toolName: 'run.python',
      arguments: { code: 'import os, socket\nos.mkfifo("f")\ns = socket.socket(socket.AF_UNIX)\ns.bind("s")\ns.close()\nprint(sorted(os.listdir(".")))' },
    },
    30_000,
  );
  assert.equal(made.code, Status.OK, describe(made));
  assert.match(made.result?.outputs.stdout ?? '', /'f'.*'s'/, describe(made));
});

after(async () => {
  if (!worker) return;
  const child = worker.process;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
  await worker.stop();
  for (const pid of processesMarked('CODEGEN_TEST_MARK', MARK)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

test('fs.read of a FIFO is refused at once', async () => {
  assertRefused(await run({ sessionId, toolName: 'fs.read', arguments: { path: 'f' } }), /not a regular file/, 'fs.read f');
});

test('five concurrent fs.read of a FIFO are all refused', async () => {
  const runs = await Promise.all(Array.from({ length: 5 }, () => run({ sessionId, toolName: 'fs.read', arguments: { path: 'f' } })));
  runs.forEach((r, i) => assertRefused(r, /not a regular file/, `fs.read f #${i + 1}`));
});

test('fs.write of a FIFO is refused (and does not replace it)', async () => {
  assertRefused(await run({ sessionId, toolName: 'fs.write', arguments: { path: 'f', contents: 'x' } }), /not a regular file/, 'fs.write f');
});

test('fs.read of a Unix socket file is refused', async () => {
  assertRefused(await run({ sessionId, toolName: 'fs.read', arguments: { path: 's' } }), /not a regular file/, 'fs.read s');
});

test('fs.write of a Unix socket file is refused', async () => {
  assertRefused(await run({ sessionId, toolName: 'fs.write', arguments: { path: 's', contents: 'x' } }), undefined, 'fs.write s');
});

test('the worker still creates and destroys sessions', async () => {
  const created = await worker.sessions.createSession(
    { workspaceId: 'fresh', config: { env: { CODEGEN_TEST_MARK: MARK } } },
    { deadline: 5_000, retry: false },
  );
  assert.equal(await statusOf(worker.sessions.destroySession({ sessionId: created.sessionId }, { deadline: 5_000 })), Status.OK);
});

test('a checkpoint of the session with the FIFO fails naming it (it cannot be archived), never leaving it out silently', async () => {
  const err = await worker.sessions.checkpointSession({ sessionId, incremental: false }, { deadline: 10_000 }).catch((e: unknown) => e);
  assert.ok(err instanceof ClientError, 'CheckpointSession failed');
  assert.equal(err.code, Status.FAILED_PRECONDITION, err.details);
  assert.match(err.details, /cannot checkpoint "workspace\/f": it is a FIFO/);
});

test('fs.list shows the FIFO and the socket as other', async () => {
  const r = await run({ sessionId, toolName: 'fs.list', arguments: { path: '' } });
  assert.equal(r.code, Status.OK, `fs.list: ${describe(r)}`);
  const entries = JSON.parse(r.result?.outputs.entries_json ?? '[]') as { name: string; type: string }[];
  assert.deepEqual(
    entries.filter((e) => e.name === 'f' || e.name === 's').map((e) => `${e.name}:${e.type}`),
    ['f:other', 's:other'],
  );
});

test('the worker stops on SIGTERM within its grace period', async () => {
  const child = worker.process;
  assert.ok(child.exitCode === null && child.signalCode === null, `the worker already exited: ${workerStderr.slice(-800)}`);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = Date.now();
  child.kill('SIGTERM');
  const limitMs = (GRACE_SECONDS + 5) * 1000;
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([exited, new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), limitMs)))]);
  clearTimeout(timer);
  if (code === 'hung') child.kill('SIGKILL');
  assert.notEqual(code, 'hung', `the worker did not exit within ${limitMs} ms of SIGTERM (killed it)`);
  assert.equal(code, 0, `exit code ${code} after ${Date.now() - started} ms: ${workerStderr.slice(-800)}`);
});
