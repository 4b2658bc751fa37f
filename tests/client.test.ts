import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { ClientError, Status } from 'nice-grpc';
import { createWorkerClient, runTask, TaskStatus } from '../src/client/index.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;

before(async () => {
  worker = await startWorker();
});

after(async () => worker?.stop());

const CLI = new URL('../src/cli.js', import.meta.url).pathname;

test('runTask resolves the final result and passes progress and logs as they arrive; deadlines apply', async () => {
  const client = createWorkerClient(worker.address);
  try {
    const { sessionId } = await client.sessions.createSession({ workspaceId: 'client' });
    const logs: string[] = [];
    const progress: number[] = [];
    const result = await runTask(client.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'print("a")\nprint("b")' } }, { onLog: (l) => logs.push(l.message), onProgress: (p) => progress.push(p.percentComplete) });
    assert.equal(result.status, TaskStatus.STATUS_SUCCESS);
    assert.deepEqual(logs, ['a', 'b']);
    assert.deepEqual(progress, [0, 100]);
    const err = await runTask(client.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import time; time.sleep(10)' } }, { deadline: 500 }).catch((e: unknown) => e);
    assert.ok(err instanceof ClientError && err.code === Status.DEADLINE_EXCEEDED);
    assert.equal((await client.sessions.getCapacity({})).activeSessions, 1);
  } finally {
    client.close();
  }
});

test('the CLI drives a real worker: create, run.python with its output streamed, status, destroy', async () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, '--address', worker.address, ...args], { encoding: 'utf8', timeout: 30_000 });
  const created = cli('create', '--workspace', 'cli-ws', '--env', 'WHO=cli');
  assert.equal(created.status, 0, created.stderr);
  const sessionId = created.stdout.trim();
  assert.match(sessionId, /^session-/);

  // Streamed: the first line is on the CLI's stdout while the code still waits.
  const run = spawn(process.execPath, [CLI, '--address', worker.address, 'run', sessionId, 'run.python', '--code', 'import os, time\nprint("hello", os.environ["WHO"], flush=True)\ntime.sleep(1.5)\nprint("done")'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const firstLineAt = new Promise<number>((resolve) => run.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.includes('hello') && resolve(Date.now()))));
  const exitedAt = new Promise<[number | null, number]>((resolve) => run.once('exit', (code) => resolve([code, Date.now()])));
  const [code, endedAt] = await exitedAt;
  assert.equal(code, 0);
  assert.equal(out, 'hello cli\ndone\n');
  assert.ok(endedAt - (await firstLineAt) >= 1000, 'the first line arrived before the run ended');

  const failing = cli('run', sessionId, 'run.python', '--code', 'import sys; sys.exit(3)');
  assert.equal(failing.status, 3);
  const json = cli('--json', 'run', sessionId, 'echo', '--arg', 'message=hi');
  assert.deepEqual(JSON.parse(json.stdout.trim().split('\n').at(-1)!).result.outputs, { message: 'hi' });
  const status = cli('--json', 'status', sessionId);
  assert.equal(JSON.parse(status.stdout).workspaceId, 'cli-ws');
  assert.match(cli('capacity').stdout, /^2\/10 sessions \(8 available\)\n.*cli-ws SESSION_STATE_READY/s);
  assert.equal(cli('destroy', sessionId).stdout.trim(), 'destroyed');
  const gone = cli('status', sessionId);
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /NOT_FOUND: session not found/);
});
