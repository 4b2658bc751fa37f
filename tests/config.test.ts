import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { mountsBelow } from '../src/sandbox/confine/diskImage.js';
import { runTool, statusOf, waitFor } from './helpers/tasks.js';
import { startWorker } from './helpers/worker.js';

const MAIN = new URL('../src/main.js', import.meta.url).pathname;

after(() => rmSync('/tmp/codegen-config-test', { recursive: true, force: true }));

function startWith(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, '--data-dir', '/tmp/codegen-config-test', ...args], {
    env: { ...process.env, WORKER_GRPC_ADDR: '127.0.0.1:0', ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
}

test('a bad configuration value stops startup with a message naming it', () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [[], { WORKER_MAX_SESSIONS: 'lots' }, /WORKER_MAX_SESSIONS must be a whole number, got 'lots'/],
    [['--max-sessions', '0'], {}, /--max-sessions must be between 1 and 100000, got 0/],
    [[], { WORKER_GRPC_ADDR: 'nowhere' }, /must be host:port/],
    [[], { WORKER_LOG_LEVEL: 'loud' }, /WORKER_LOG_LEVEL must be one of error, warn, info/],
    [[], { WORKER_PIP_INDEX_URL: 'ftp://x' }, /WORKER_PIP_INDEX_URL must use http: or https: or file:/],
    [['--no-such-flag'], {}, /Unknown option '--no-such-flag'/],
    [[], { WORKER_PYTHON: '/nonexistent/python' }, /cannot run the Python interpreter '\/nonexistent\/python'/],
  ];
  for (const [args, env, message] of cases) {
    const result = startWith(args, env);
    assert.notEqual(result.status, 0, `${JSON.stringify(args)} ${JSON.stringify(env)} should not start`);
    assert.match(result.stderr, message);
  }
});

test('--help lists every setting and exits 0', () => {
  const result = startWith(['--help']);
  assert.equal(result.status, 0);
  for (const name of ['--grpc-addr', 'WORKER_DATA_DIR', 'WORKER_SESSION_IDLE_SECONDS', 'COORDINATOR_ADDR', 'WORKER_PIP_INDEX_URL'])
    assert.match(result.stdout, new RegExp(name));
});

test('a flag wins over its environment variable', async () => {
  const worker = await startWorker({ env: { WORKER_MAX_SESSIONS: '7', WORKER_ID: 'from-env' }, args: ['--max-sessions', '3', '--worker-id', 'from-flag'] });
  try {
    assert.equal((await worker.sessions.getCapacity({})).totalSessions, 3);
    assert.equal((await worker.sessions.createSession({ workspaceId: 'w' })).workerId, 'from-flag');
  } finally {
    await worker.stop();
  }
});

test('logs are JSON lines carrying session_id and task_id', async () => {
  const worker = await startWorker();
  try {
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
    for await (const _ of worker.tasks.executeTask({ sessionId, taskId: 'logged', toolName: 'echo', arguments: { message: 'x' } }));
    await waitFor(() => worker.logs.some((l) => l.message === 'task finished'));
    const finished = worker.logs.find((l) => l.message === 'task finished')!;
    assert.equal(finished.session_id, sessionId);
    assert.equal(finished.task_id, 'logged');
    assert.equal(finished.status, 'STATUS_SUCCESS');
    assert.ok(typeof finished.timestamp === 'string');
  } finally {
    await worker.stop();
  }
});

test('a worker whose log reader goes away (its stdout a closed pipe) keeps serving, and stops cleanly', async () => {
  const worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
  try {
    // The reading end closed: every log line written from here on fails with EPIPE.
    worker.process.stdout!.destroy();
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'no-reader' });
    assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(6 * 7)' })).stdout, '42\n');
    const exited = new Promise<number | null>((resolve) => worker.process.once('exit', (code) => resolve(code)));
    worker.process.kill('SIGTERM');
    assert.equal(await exited, 0, 'a clean stop');
    assert.deepEqual(await mountsBelow(worker.dataDir), [], 'its disks unmounted');
  } finally {
    await worker.stop();
  }
});

test('idle sessions are destroyed after WORKER_SESSION_IDLE_SECONDS; busy ones are not', async () => {
  const worker = await startWorker({ env: { WORKER_SESSION_IDLE_SECONDS: '1' } });
  try {
    const idle = await worker.sessions.createSession({ workspaceId: 'idle' });
    const busy = await worker.sessions.createSession({ workspaceId: 'busy' });
    const running = (async () => {
      for await (const _ of worker.tasks.executeTask({
        sessionId: busy.sessionId,
        toolName: 'run.python',
        arguments: { code: 'import time; time.sleep(2.5)' },
      }));
    })();
    await waitFor(async () => (await statusOf(worker.sessions.getSessionStatus({ sessionId: idle.sessionId }))) === Status.NOT_FOUND, 5000);
    assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId: busy.sessionId })), Status.OK, 'a session running a task is not idle');
    await running;
    assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId: busy.sessionId })), Status.OK, 'idle time counts from the end of its last task');
    await waitFor(async () => (await statusOf(worker.sessions.getSessionStatus({ sessionId: busy.sessionId }))) === Status.NOT_FOUND, 5000);
  } finally {
    await worker.stop();
  }
});
