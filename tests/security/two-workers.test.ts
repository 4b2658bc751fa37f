// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, describeCall, runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "workers share uids and data directories": two workers on one host must never hand the same
// host uid to two sessions, and a second worker on a data directory in use must leave it alone
// and say which process holds it.

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

interface SecondRun {
  /** Exit code, or null when it had to be stopped (it ran on). */
  code: number | null;
  signal: string | null;
  /** It got as far as serving (it was then stopped). */
  listening: boolean;
  stderr: string;
  stdout: string;
}

/**
 * Starts a second worker on `dataDir` and waits up to 15 s for it to exit. One still running
 * then (or already serving) is stopped: SIGTERM, SIGKILL after 5 s.
 */
async function runSecondWorker(dataDir: string, grpcAddr = '127.0.0.1:0', env: Record<string, string> = {}): Promise<SecondRun> {
  const child = spawn(process.execPath, [MAIN, '--grpc-addr', grpcAddr, '--http-addr', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, WORKER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: SecondRun = { code: null, signal: null, listening: false, stderr: '', stdout: '' };
  child.stderr.on('data', (d: Buffer) => (run.stderr += d.toString()));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      run.code = code;
      run.signal = signal;
      resolve();
    }),
  );
  const serving = new Promise<void>((resolve) =>
    child.stdout.on('data', (d: Buffer) => {
      run.stdout += d.toString();
      if (run.stdout.includes('"worker listening"')) {
        run.listening = true;
        resolve();
      }
    }),
  );
  const timedOut = new Promise<void>((resolve) => setTimeout(resolve, 15_000).unref());
  await Promise.race([exited, serving, timedOut]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(kill);
    run.code = null; // it did not exit on its own
  }
  return run;
}

test('two workers on one host hand out distinct uids and say which range is theirs', async () => {
  let a: RunningWorker | undefined;
  let b: RunningWorker | undefined;
  try {
    [a, b] = await Promise.all([startWorker(), startWorker()]);
    const uids: { worker: string; uid: number }[] = [];
    for (const [name, w] of [
      ['A', a],
      ['B', b],
    ] as const) {
      for (let i = 0; i < 3; i++) {
        const { sessionId } = await w.sessions.createSession({ workspaceId: `uids-${name}-${i}` }, { deadline: 15_000 });
        const run = await callTool(w.tasks, sessionId, 'run.python', { code: 'import os\nprint(os.getuid())' });
        assert.equal(run.code, Status.OK, describeCall(run));
        uids.push({ worker: name, uid: Number(run.result?.outputs.stdout?.trim()) });
      }
    }
    const problems: string[] = [];
    const listed = uids.map((u) => `${u.worker}:${u.uid}`).join(' ');
    if (new Set(uids.map((u) => u.uid)).size !== 6) problems.push(`the six sessions of two workers run as ${listed}`);
    const ranges = [a, b].map((w) => w.logs.find((l) => l.message === 'sandbox ready')?.session_uids);
    if (!ranges.every((r) => typeof r === 'string' && r.length > 0)) problems.push(`a sandbox ready line has no session_uids: ${JSON.stringify(ranges)}`);
    else if (ranges[0] === ranges[1]) problems.push(`both workers announce the same session_uids: ${JSON.stringify(ranges)}`);
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    await Promise.all([stopHard(a), stopHard(b)]);
  }
});

/** What is wrong with A's session after B tried its data directory: the host directory, the file, the code. */
async function damageTo(a: RunningWorker, sessionId: string): Promise<string[]> {
  const problems: string[] = [];
  const workspace = join(a.dataDir, 'sessions', sessionId, 'disk', 'workspace');
  if (!existsSync(workspace)) problems.push(`its workspace directory ${workspace} is gone from the host`);
  const read = await callTool(a.tasks, sessionId, 'fs.read', { path: 'keep.txt' });
  if (read.code !== Status.OK || read.result?.outputs.contents !== 'still here') problems.push(`fs.read keep.txt: ${describeCall(read)}`);
  const run = await callTool(a.tasks, sessionId, 'run.python', { code: 'print(6*7)' });
  if (run.result?.outputs.stdout !== '42\n') problems.push(`run.python print(6*7): ${describeCall(run)}`);
  return problems.map((p) => `A's session after B: ${p}`);
}

/** A session of `a` holding keep.txt, which B must leave alone. */
async function sessionWithKeptFile(a: RunningWorker): Promise<string> {
  const { sessionId } = await a.sessions.createSession({ workspaceId: 'first' }, { deadline: 15_000 });
  const written = await callTool(a.tasks, sessionId, 'fs.write', { path: 'keep.txt', contents: 'still here' });
  assert.equal(written.code, Status.OK, describeCall(written));
  return sessionId;
}

test('a second worker on a data directory in use exits non-zero, names the holder, touches nothing', async () => {
  let a: RunningWorker | undefined;
  try {
    a = await startWorker();
    const sessionId = await sessionWithKeptFile(a);

    const second = await runSecondWorker(a.dataDir);
    const how = `B ${second.listening ? 'started serving' : second.code === null ? 'did not exit in 15 s' : `exited ${second.code}`}; stderr: ${second.stderr.slice(-1500) || '(empty)'}`;
    const problems: string[] = [];
    if (second.code === null || second.code === 0) problems.push(`B must exit non-zero on its own: ${how}`);
    if (!second.stderr.includes(a.dataDir)) problems.push(`B's stderr must name the data directory ${a.dataDir}: ${how}`);
    if (!new RegExp(`\\b${a.process.pid}\\b`).test(second.stderr)) problems.push(`B's stderr must name A's pid ${a.process.pid}: ${how}`);
    // A's session is checked whatever B did; all of it is reported together.
    problems.push(...(await damageTo(a, sessionId)));
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    await stopHard(a);
  }
});

test("a second worker on a data directory in use and on A's port leaves A's sessions alone", async () => {
  let a: RunningWorker | undefined;
  try {
    a = await startWorker();
    const sessionId = await sessionWithKeptFile(a);

    const second = await runSecondWorker(a.dataDir, a.address);
    const how = `B ${second.listening ? 'started serving' : second.code === null ? 'did not exit in 15 s' : `exited ${second.code}`}; stderr: ${second.stderr.slice(-1500) || '(empty)'}`;
    const problems: string[] = [];
    if (second.code === null || second.code === 0) problems.push(`B must exit non-zero on its own: ${how}`);
    problems.push(...(await damageTo(a, sessionId)));
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    await stopHard(a);
  }
});

test('uid ranges are whole blocks: a configured base off the grid, or one another worker holds, is refused; its sessions live on', async () => {
  let a: RunningWorker | undefined;
  const scratch = mkdtempSync(join(tmpdir(), 'codegen-uid-block-'));
  try {
    a = await startWorker({ env: { WORKER_UID_BASE: '3000000', WORKER_SPARE_SESSIONS: '0' } });
    const { sessionId } = await a.sessions.createSession({ workspaceId: 'a' }, { deadline: 15_000 });
    // A task running in A while others try to start on the same uids.
    const long = runTaskWithin(
      a.tasks,
      {
        sessionId,
        toolName: 'run.python',
        arguments: {
          code: 'import time, os\nopen("began", "w").close()\nwhile not os.path.exists("end"):\n    time.sleep(0.01)\nprint("survived", os.getuid())',
        },
      },
      60_000,
    );
    // Its process runs with one of A's uids (a refused start must not kill it) once it says so.
    await waitFor(async () => (await callTool(a!.tasks, sessionId, 'fs.read', { path: 'began' })).code === Status.OK, 30_000);

    const offGrid = await runSecondWorker(join(scratch, 'b'), '127.0.0.1:0', { WORKER_UID_BASE: '3000001' });
    assert.notEqual(offGrid.code, 0, `a base off the grid must be refused: ${offGrid.stderr}`);
    assert.match(offGrid.stderr, /WORKER_UID_BASE must be a multiple of 100000/);
    const taken = await runSecondWorker(join(scratch, 'c'), '127.0.0.1:0', { WORKER_UID_BASE: '3000000' });
    assert.notEqual(taken.code, 0, `a base in use must be refused: ${taken.stderr}`);
    assert.match(taken.stderr, new RegExp(`WORKER_UID_BASE 3000000: the uids 3000000-3099999 are in use by another worker \\(pid ${a.process.pid}\\)`));

    assert.equal((await callTool(a.tasks, sessionId, 'fs.write', { path: 'end', contents: '' })).code, Status.OK);
    const survived = await long;
    assert.match(survived.result?.outputs.stdout ?? '', /^survived 300000\d\n$/, `A's task: ${JSON.stringify(survived.result)}`);
  } finally {
    await stopHard(a);
    rmSync(scratch, { recursive: true, force: true });
  }
});
