import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { runTask, runTool, statusOf, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// One test per row of the reference's Session, Task and Tool error tables (and decisions.md's
// additions), each produced by the condition the row names.
let worker: RunningWorker;
let index: PackageIndex;

before(async () => {
  index = await servePackageIndex([{ name: 'okpkg', version: '1.0.0', files: { 'okpkg/__init__.py': '' } }]);
  // No spares and no disk images: the initialization test swaps the sessions directory for a file.
  worker = await startWorker({ env: { WORKER_MAX_SESSIONS: '3', WORKER_PIP_INDEX_URL: index.url, WORKER_SPARE_SESSIONS: '0', WORKER_DEFAULT_DISK_MB: '0' } });
});

after(async () => {
  await worker?.stop();
  await index?.close();
});

async function withSession<T>(fn: (sessionId: string) => Promise<T>): Promise<T> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'errors' });
  try {
    return await fn(sessionId);
  } finally {
    await worker.sessions.destroySession({ sessionId }).catch(() => undefined);
  }
}

describe('session errors', () => {
  test('session not found → NOT_FOUND', async () => {
    const sessionId = 'session-doesnotexist000000';
    assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId })), Status.NOT_FOUND);
    assert.equal(await statusOf(worker.sessions.destroySession({ sessionId })), Status.NOT_FOUND);
    assert.equal(await statusOf(worker.tasks.cancelTask({ sessionId, taskId: 't' })), Status.NOT_FOUND);
    const run = await runTask(worker.tasks, { sessionId, toolName: 'echo', arguments: { message: 'x' } });
    assert.equal(run.code, Status.NOT_FOUND);
    assert.match(run.error!.details, /session not found: "session-doesnotexist000000"/);
    assert.equal(run.result, undefined, 'request errors end the call without a result');
  });

  test('destroying a destroyed session → NOT_FOUND', async () => {
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
    await worker.sessions.destroySession({ sessionId });
    assert.equal(await statusOf(worker.sessions.destroySession({ sessionId })), Status.NOT_FOUND);
  });

  test('capacity exceeded → RESOURCE_EXHAUSTED', async () => {
    const ids = await Promise.all([1, 2, 3].map(() => worker.sessions.createSession({ workspaceId: 'full' })));
    try {
      const err = await worker.sessions.createSession({ workspaceId: 'one-too-many' }).catch((e: unknown) => e);
      assert.equal((err as { code: Status }).code, Status.RESOURCE_EXHAUSTED);
      assert.match((err as Error).message, /maximum of 3 sessions/);
      const capacity = await worker.sessions.getCapacity({});
      assert.deepEqual([capacity.activeSessions, capacity.availableSessions], [3, 0]);
    } finally {
      await Promise.all(ids.map(({ sessionId }) => worker.sessions.destroySession({ sessionId })));
    }
    assert.equal((await worker.sessions.getCapacity({})).availableSessions, 3, 'destroying frees the capacity');
  });

  test('invalid session state → FAILED_PRECONDITION (a task sent while the session is TERMINATING)', async () => {
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
    // Many files make the workspace's removal take a while, keeping the session in TERMINATING.
    await runTool(worker.tasks, sessionId, 'run.python', { code: 'import os\nos.mkdir("many")\nfor i in range(20000): open(f"many/{i}", "w").close()' });
    const sleeper = runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import time; time.sleep(60)' } });
    await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
    const destroying = worker.sessions.destroySession({ sessionId });
    const late = await runTask(worker.tasks, { sessionId, toolName: 'echo', arguments: { message: 'too late' } });
    assert.equal(late.code, Status.FAILED_PRECONDITION, late.error?.details);
    assert.match(late.error!.details, /invalid session state: cannot run a task while session ".*" is TERMINATING/);
    assert.equal((await destroying).success, true);
    assert.equal((await sleeper).result?.status, TaskStatus.STATUS_CANCELLED, 'destroy cancels running tasks');
  });

  test('initialization failed → INTERNAL (the workspace cannot be created)', async () => {
    const sessionsDir = join(worker.dataDir, 'sessions');
    await rm(sessionsDir, { recursive: true, force: true });
    await writeFile(sessionsDir, 'not a directory');
    try {
      const err = await worker.sessions.createSession({ workspaceId: 'w' }).catch((e: unknown) => e);
      assert.equal((err as { code: Status }).code, Status.INTERNAL);
      assert.match((err as Error).message, /session initialization failed: could not create the workspace/);
      assert.equal((await worker.sessions.getCapacity({})).activeSessions, 0, 'a failed session holds no capacity');
    } finally {
      await rm(sessionsDir, { force: true });
      await mkdir(sessionsDir);
    }
  });

  test('bad CreateSession arguments → INVALID_ARGUMENT', async () => {
    assert.equal(await statusOf(worker.sessions.createSession({ workspaceId: '' })), Status.INVALID_ARGUMENT);
    const err = await worker.sessions.createSession({ workspaceId: 'w', config: { language: 'cobol' } }).catch((e: unknown) => e);
    assert.equal((err as { code: Status }).code, Status.INVALID_ARGUMENT);
    assert.match((err as Error).message, /"cobol" is not supported.*supported: python/);
    assert.equal(await statusOf(worker.sessions.createSession({ workspaceId: 'w', config: { limits: { maxMemoryMb: -1 } } })), Status.INVALID_ARGUMENT);
    assert.equal(await statusOf(worker.sessions.createSession({ workspaceId: 'w', config: { env: { 'A=B': 'x' } } })), Status.INVALID_ARGUMENT);
  });
});

describe('task errors', () => {
  test('task not found → NOT_FOUND; CancelTask of an unknown task answers not_found', async () => {
    await withSession(async (sessionId) => {
      assert.equal(await statusOf(worker.tasks.getTaskStatus({ sessionId, taskId: 'no-such-task' })), Status.NOT_FOUND);
      assert.deepEqual(await worker.tasks.cancelTask({ sessionId, taskId: 'no-such-task' }), { cancelled: false, state: 'not_found' });
    });
  });

  test('task timeout → TaskResult TIMEOUT with the output so far, then DEADLINE_EXCEEDED', async () => {
    await withSession(async (sessionId) => {
      const run = await runTask(worker.tasks, {
        sessionId,
        taskId: 'slow',
        toolName: 'run.python',
        arguments: { code: 'import time\nprint("before", flush=True)\ntime.sleep(60)' },
        constraints: { timeoutSeconds: 1 },
      });
      assert.equal(run.code, Status.DEADLINE_EXCEEDED);
      assert.equal(run.result?.status, TaskStatus.STATUS_TIMEOUT);
      assert.equal(run.result?.outputs.stdout, 'before\n');
      assert.equal(run.messages.at(-1)?.payload?.$case, 'result', 'the result is the last message');
      assert.equal((await worker.tasks.getTaskStatus({ sessionId, taskId: 'slow' })).status, TaskStatus.STATUS_TIMEOUT);
    });
  });

  test("the session's timeout applies when the task gives none", async () => {
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w', config: { limits: { timeoutSeconds: 1 } } });
    const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import time; time.sleep(60)' } });
    assert.equal(run.code, Status.DEADLINE_EXCEEDED);
    await worker.sessions.destroySession({ sessionId });
  });

  test('task cancelled → TaskResult CANCELLED, then CANCELLED; CancelTask of a finished task answers already_finished', async () => {
    await withSession(async (sessionId) => {
      const running = runTask(worker.tasks, { sessionId, taskId: 'victim', toolName: 'run.python', arguments: { code: 'import time; time.sleep(60)' } });
      await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
      assert.equal((await worker.tasks.getTaskStatus({ sessionId, taskId: 'victim' })).status, TaskStatus.STATUS_RUNNING);
      assert.deepEqual(await worker.tasks.cancelTask({ sessionId, taskId: 'victim' }), { cancelled: true, state: 'canceled' });
      const run = await running;
      assert.equal(run.code, Status.CANCELLED);
      assert.equal(run.result?.status, TaskStatus.STATUS_CANCELLED);
      assert.deepEqual(await worker.tasks.cancelTask({ sessionId, taskId: 'victim' }), { cancelled: false, state: 'already_finished' });
      const status = await worker.tasks.getTaskStatus({ sessionId, taskId: 'victim' });
      assert.equal(status.status, TaskStatus.STATUS_CANCELLED);
      assert.ok(status.endTimeMs > 0);
    });
  });

  test('invalid arguments → INVALID_ARGUMENT', async () => {
    await withSession(async (sessionId) => {
      const cases: [string, Record<string, string>, RegExp, { timeoutSeconds: number }?][] = [
        ['run.python', {}, /run.python requires 'code'/],
        ['fs.write', { path: 'a' }, /fs.write requires 'contents'/],
        ['echo', { message: 'x', extra: 'y' }, /echo does not take 'extra'/],
        ['no.such.tool', {}, /unknown tool "no.such.tool"; this python session offers echo, fs.write/],
        ['fs.read', { path: 'a', encoding: 'latin1' }, /encoding must be 'utf-8' or 'base64'/],
        ['fs.write', { path: 'a', contents: '!!!', encoding: 'base64' }, /not valid base64/],
        ['pkg.install', { requirements: '--index-url http://evil/' }, /not pip options/],
        ['pkg.install', { requirements: '\n# nothing\n' }, /list no packages/],
        ['echo', { message: 'x' }, /timeout_seconds must not be negative/, { timeoutSeconds: -1 }],
      ];
      for (const [toolName, args, message, constraints] of cases) {
        const run = await runTask(worker.tasks, { sessionId, toolName, arguments: args, constraints });
        assert.equal(run.code, Status.INVALID_ARGUMENT, `${toolName} ${JSON.stringify(args)}: ${run.error?.details}`);
        assert.match(run.error!.details, message);
        assert.equal(run.result, undefined);
      }
    });
  });

  test('a task_id still running in the session → ALREADY_EXISTS', async () => {
    await withSession(async (sessionId) => {
      const first = runTask(worker.tasks, { sessionId, taskId: 'dup', toolName: 'run.python', arguments: { code: 'import time; time.sleep(60)' } });
      await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
      const second = await runTask(worker.tasks, { sessionId, taskId: 'dup', toolName: 'echo', arguments: { message: 'x' } });
      assert.equal(second.code, Status.ALREADY_EXISTS);
      await worker.tasks.cancelTask({ sessionId, taskId: 'dup' });
      assert.equal((await first).code, Status.CANCELLED);
      // Once finished, the id may be used again.
      const third = await runTask(worker.tasks, { sessionId, taskId: 'dup', toolName: 'echo', arguments: { message: 'x' } });
      assert.equal(third.code, Status.OK);
    });
  });
});

describe('tool errors', () => {
  test('invalid path → INVALID_ARGUMENT', async () => {
    await withSession(async (sessionId) => {
      const run = await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: '../secret' } });
      assert.equal(run.code, Status.INVALID_ARGUMENT);
      assert.match(run.error!.details, /invalid path "..\/secret": '..' segments are not allowed/);
    });
  });

  test('file not found → NOT_FOUND', async () => {
    await withSession(async (sessionId) => {
      for (const toolName of ['fs.read', 'fs.list']) {
        const run = await runTask(worker.tasks, { sessionId, toolName, arguments: { path: 'missing/file.txt' } });
        assert.equal(run.code, Status.NOT_FOUND, toolName);
        assert.match(run.error!.details, /file not found: "missing\/file.txt"/);
      }
    });
  });

  test('permission denied → PERMISSION_DENIED (files the session made read-only or unreadable)', async () => {
    await withSession(async (sessionId) => {
      await runTool(worker.tasks, sessionId, 'run.python', {
        code: 'import os\nopen("ro.txt","w").write("keep")\nos.chmod("ro.txt", 0o444)\nopen("secret.txt","w").write("x")\nos.chmod("secret.txt", 0)',
      });
      const write = await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'ro.txt', contents: 'overwrite' } });
      assert.equal(write.code, Status.PERMISSION_DENIED);
      assert.match(write.error!.details, /read-only \(mode 0444\)/);
      assert.equal((await runTool(worker.tasks, sessionId, 'fs.read', { path: 'ro.txt' })).contents, 'keep');
      const read = await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'secret.txt' } });
      assert.equal(read.code, Status.PERMISSION_DENIED);
    });
  });

  test("python not found → FAILED_PRECONDITION (the session's interpreter is gone)", async () => {
    await withSession(async (sessionId) => {
      await rm(join(worker.dataDir, 'sessions', sessionId, 'disk', 'env', 'bin', 'python'));
      const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'print(1)' } });
      assert.equal(run.code, Status.FAILED_PRECONDITION);
      assert.match(run.error!.details, /python not found/);
    });
  });

  test('package install failed → TaskResult FAILURE with pip output, then INTERNAL', async () => {
    await withSession(async (sessionId) => {
      const run = await runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'no-such-package-xyz' } });
      assert.equal(run.code, Status.INTERNAL);
      assert.match(run.error!.details, /package install failed: ERROR: .*no-such-package-xyz/);
      assert.equal(run.result?.status, TaskStatus.STATUS_FAILURE);
      assert.match(run.result?.outputs.stderr ?? '', /No matching distribution found for no-such-package-xyz/);
    });
  });

  test('python exiting non-zero → TaskResult FAILURE with exit_code, and an OK call', async () => {
    await withSession(async (sessionId) => {
      const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import sys; print("bye"); sys.exit(3)' } });
      assert.equal(run.code, Status.OK);
      assert.equal(run.result?.status, TaskStatus.STATUS_FAILURE);
      assert.equal(run.result?.exitCode, 3);
      assert.equal(run.result?.outputs.exit_code, '3');
      assert.equal(run.result?.outputs.stdout, 'bye\n');
      const killed = await runTask(worker.tasks, {
        sessionId,
        toolName: 'run.python',
        arguments: { code: 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)' },
      });
      assert.equal(killed.result?.exitCode, 137, 'killed by signal N → 128+N');
    });
  });
});

test("a client's mistakes are logged at info, without stacks; nothing of them at warn or error", async () => {
  const from = worker.logs.length;
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'mistakes' });
  const grant = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'a', contentType: 'text/plain', sizeBytes: 2 });
  const put = (url: string) => fetch(url, { method: 'PUT', body: 'hi', headers: { 'content-type': 'text/plain' } });
  assert.equal((await put(grant.uploadUrl.replace(/signature=[0-9a-f]{4}/, 'signature=0000'))).status, 403);
  assert.equal((await put(grant.uploadUrl)).status, 200);
  assert.equal((await put(grant.uploadUrl)).status, 409);
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'nope' } })).code, Status.NOT_FOUND);
  assert.equal((await runTask(worker.tasks, { sessionId: 'session-nope', toolName: 'echo', arguments: { message: 'x' } })).code, Status.NOT_FOUND);
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'nope', arguments: {} })).code, Status.INVALID_ARGUMENT);
  const cancel = new AbortController();
  const cancelled = runTask(worker.tasks, { sessionId, toolName: 'run.shell', arguments: { command: 'echo started; sleep 5' } }, cancel.signal).catch(
    () => undefined,
  );
  await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
  cancel.abort();
  await cancelled;
  await statusOf(worker.artifacts.recordArtifact({ sessionId, artifactId: 'nope', artifactName: 'x' }));
  await worker.sessions.destroySession({ sessionId });
  const logged = worker.logs.slice(from);
  const loud = logged.filter((l) => l.level === 'warn' || l.level === 'error' || /\n\s+at /.test(JSON.stringify(l)));
  assert.deepEqual(loud, []);
  const refused = logged.filter((l) => l.message === 'rpc' && l.code !== 'OK');
  assert.deepEqual(
    refused.map((l) => l.level),
    refused.map(() => 'info'),
  );
  assert.ok(refused.length >= 4, `the refusals are logged: ${JSON.stringify(refused.map((l) => l.code))}`);
});
