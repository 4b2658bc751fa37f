import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { ClientError, Status } from 'nice-grpc';
import { CodegenWorker, createWorkerClient, Processes, runTask, TaskStatus } from '../src/client/index.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';
import { waitFor } from './helpers/tasks.js';

let worker: RunningWorker;

// An empty index: pkg.install fails at once, the packages not in it (for the failing-task cases below).
const emptyIndex = mkdtempSync(join(tmpdir(), 'codegen-empty-index-'));

before(async () => {
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: pathToFileURL(emptyIndex).href } });
});

after(async () => {
  await worker?.stop();
  rmSync(emptyIndex, { recursive: true, force: true });
});

const CLI = new URL('../src/cli.js', import.meta.url).pathname;

test('runTask resolves the final result and passes progress and logs as they arrive; deadlines apply', async () => {
  const client = createWorkerClient(worker.address);
  try {
    const { sessionId } = await client.sessions.createSession({ workspaceId: 'client' });
    const logs: string[] = [];
    const progress: number[] = [];
    const result = await runTask(
      client.tasks,
      { sessionId, toolName: 'run.python', arguments: { code: 'print("a")\nprint("b")' } },
      { onLog: (l) => logs.push(l.message), onProgress: (p) => progress.push(p.percentComplete) },
    );
    assert.equal(result.status, TaskStatus.STATUS_SUCCESS);
    assert.equal(result.ended, 'completed');
    assert.deepEqual(logs.join('\n').split('\n'), ['a', 'b'], 'each message holds whole lines');
    assert.deepEqual(progress, [0, 100]);
    const err = await runTask(client.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import time; time.sleep(10)' } }, { deadline: 500 }).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof ClientError && err.code === Status.DEADLINE_EXCEEDED);
    assert.equal((await client.sessions.getCapacity({})).activeSessions, 1);
  } finally {
    client.close();
  }
});

test('runTask resolves, with what the task printed, for a task that timed out, was cancelled or failed', async () => {
  const client = createWorkerClient(worker.address);
  try {
    const { sessionId } = await client.sessions.createSession({ workspaceId: 'client-ends' });
    const code = 'print("started", flush=True)\nimport time; time.sleep(60)';

    const timedOut = await runTask(
      client.tasks,
      { sessionId, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 1 } },
      { deadline: 30_000 },
    );
    assert.equal(timedOut.ended, 'timeout');
    assert.equal(timedOut.status, TaskStatus.STATUS_TIMEOUT);
    assert.equal(timedOut.outputs.stdout, 'started\n');
    assert.equal(timedOut.outputs.killed_by, 'timeout');
    assert.match(timedOut.error, /timeout/);

    const cancel = (log: { message: string }) => {
      if (log.message === 'started') void client.tasks.cancelTask({ sessionId, taskId: 'to-cancel' });
    };
    const cancelled = await runTask(
      client.tasks,
      { sessionId, taskId: 'to-cancel', toolName: 'run.python', arguments: { code } },
      { onLog: cancel, deadline: 30_000 },
    );
    assert.equal(cancelled.ended, 'cancelled');
    assert.equal(cancelled.status, TaskStatus.STATUS_CANCELLED);
    assert.equal(cancelled.outputs.stdout, 'started\n');

    // pkg.install ends its call INTERNAL after a failed result: the result (pip's output) is kept.
    const failed = await runTask(client.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'nothing-here' } }, { deadline: 60_000 });
    assert.equal(failed.ended, 'completed');
    assert.equal(failed.status, TaskStatus.STATUS_FAILURE);
    assert.match(failed.outputs.stderr ?? '', /nothing-here/);

    // No result at all (the call itself fails): a rejection with the call's status.
    const missing = await runTask(client.tasks, { sessionId: 'session-none', toolName: 'echo', arguments: { message: 'x' } }).catch((e: unknown) => e);
    assert.ok(missing instanceof ClientError && missing.code === Status.NOT_FOUND);
    await client.sessions.destroySession({ sessionId });
  } finally {
    client.close();
  }
});

test('the CLI drives a real worker: create, run.python with its output streamed, run.shell, status, destroy', async () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, '--address', worker.address, ...args], { encoding: 'utf8', timeout: 30_000 });
  const created = cli('create', '--workspace', 'cli-ws', '--env', 'WHO=cli');
  assert.equal(created.status, 0, created.stderr);
  const sessionId = created.stdout.trim();
  assert.match(sessionId, /^session-/);

  // Streamed: the first line is on the CLI's stdout while the code still waits.
  const run = spawn(
    process.execPath,
    [
      CLI,
      '--address',
      worker.address,
      'run',
      sessionId,
      'run.python',
      '--code',
      'import os, time\nprint("hello", os.environ["WHO"], flush=True)\ntime.sleep(1.5)\nprint("done")',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const firstLineAt = new Promise<number>((resolve) =>
    run.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.includes('hello') && resolve(Date.now()))),
  );
  const exitedAt = new Promise<[number | null, number]>((resolve) => run.once('exit', (code) => resolve([code, Date.now()])));
  const [code, endedAt] = await exitedAt;
  assert.equal(code, 0);
  assert.equal(out, 'hello cli\ndone\n');
  assert.ok(endedAt - (await firstLineAt) >= 1000, 'the first line arrived before the run ended');

  const failing = cli('run', sessionId, 'run.python', '--code', 'import sys; sys.exit(3)');
  assert.equal(failing.status, 3);
  const shell = cli('run', sessionId, 'run.shell', '--command', 'mkdir -p d && cd d && pwd; exit 4');
  assert.equal(shell.status, 4);
  assert.equal(shell.stdout, '/workspace/d\n');
  assert.equal(cli('run', sessionId, 'run.shell', '--command', 'pwd', '--cwd', 'd').stdout, '/workspace/d\n');
  const otherLanguage = cli('create', '--workspace', 'cli-ws', '--language', 'cobol');
  assert.equal(otherLanguage.status, 1);
  assert.match(otherLanguage.stderr, /INVALID_ARGUMENT: .*config\.language "cobol" is not supported by this worker; supported: python/);
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

test('the CLI prints ids alone, so its commands chain; --json prints enums by name; --version', async () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, '--address', worker.address, ...args], { encoding: 'utf8', timeout: 60_000 });
  const sh = (script: string) =>
    spawnSync('sh', ['-c', script], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, CLI: `${process.execPath} ${CLI} --address ${worker.address}` },
    });
  const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  assert.equal(cli('--version').stdout, `${version}\n`);

  const created = cli('--json', 'create', '--workspace', 'chain');
  assert.equal(created.status, 0, created.stderr);
  const session = JSON.parse(created.stdout) as { sessionId: string; state: unknown };
  assert.equal(session.state, 'SESSION_STATE_READY');
  assert.equal(cli('run', session.sessionId, 'fs.write', '--arg', 'path=kept.txt', '--arg', 'contents=kept').status, 0);

  // checkpoint → restore, as a shell chains them.
  const chained = sh(`$CLI status "$($CLI restore "$($CLI checkpoint ${session.sessionId})")"`);
  assert.equal(chained.status, 0, chained.stderr);
  assert.match(chained.stdout, /^session-\S+ SESSION_STATE_READY /);
  const chainedId = chained.stdout.split(' ')[0]!;
  const checkpoint = cli('checkpoint', session.sessionId);
  assert.match(checkpoint.stdout, /^[^\s]+\n$/, 'the checkpoint id alone');
  const details = JSON.parse(cli('--json', 'checkpoint', session.sessionId).stdout) as { checkpointId: string; sizeBytes: number; storageUrl: string };
  assert.ok(details.checkpointId && details.sizeBytes > 0 && details.storageUrl, JSON.stringify(details));

  // destroy --checkpoint prints the checkpoint id alone too.
  const restored = sh(`$CLI run "$($CLI restore "$($CLI destroy --checkpoint ${session.sessionId})")" fs.read --arg path=kept.txt`);
  assert.equal(restored.status, 0, restored.stderr);
  assert.match(restored.stdout, /^contents: kept$/m);

  const status = JSON.parse(cli('--json', 'status', chainedId).stdout) as { state: unknown };
  assert.equal(status.state, 'SESSION_STATE_READY');
  const capacity = JSON.parse(cli('--json', 'capacity').stdout) as { sessions: { state: unknown }[] };
  assert.ok(
    capacity.sessions.length > 0 && capacity.sessions.every((s) => typeof s.state === 'string' && /^SESSION_STATE_/.test(s.state)),
    JSON.stringify(capacity),
  );

  const lines = (out: string) =>
    out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { log?: { level: unknown }; result?: { status: unknown; ended: unknown; outputs: Record<string, string> } });
  const ran = lines(cli('--json', 'run', chainedId, 'run.python', '--code', 'print("x")').stdout);
  assert.equal(ran.find((l) => l.log)!.log!.level, 'LOG_LEVEL_INFO');
  assert.equal(ran.at(-1)!.result!.status, 'STATUS_SUCCESS');
  assert.equal(ran.at(-1)!.result!.ended, 'completed');

  // A timed-out task: what it printed, how it ended, and exit code 124 (as timeout(1)).
  const slow = ['run', chainedId, 'run.python', '--timeout', '1', '--code', 'print("started", flush=True)\nimport time; time.sleep(60)'];
  const timedOut = cli(...slow);
  assert.equal(timedOut.status, 124);
  assert.equal(timedOut.stdout, 'started\n');
  assert.match(timedOut.stderr, /^STATUS_TIMEOUT: /);
  const timedOutJson = lines(cli('--json', ...slow).stdout).at(-1)!.result!;
  assert.equal(timedOutJson.status, 'STATUS_TIMEOUT');
  assert.equal(timedOutJson.ended, 'timeout');
  assert.equal(timedOutJson.outputs.stdout, 'started\n');
});

test('the CLI starts a background process (--background prints its id) and attach streams it and types into it', async () => {
  const cli = (input: string | undefined, ...args: string[]) =>
    spawnSync(process.execPath, [CLI, '--address', worker.address, ...args], { encoding: 'utf8', timeout: 30_000, input });
  const sessionId = cli(undefined, 'create', '--workspace', 'cli-background').stdout.trim();
  const started = cli(undefined, 'run', sessionId, 'run.shell', '--command', 'printf "name? "; read name; echo "hello $name"; exit 5', '--background');
  assert.equal(started.status, 0, started.stderr);
  const processId = started.stdout.trim();
  assert.match(processId, /^p\d+$/);
  const attached = cli('ada\n', 'attach', sessionId, processId);
  assert.equal(attached.stdout, 'name? hello ada\n');
  assert.equal(attached.status, 5, "attach ends with the process's exit code");
  assert.equal(cli(undefined, 'destroy', sessionId).status, 0);
});

test('Processes: start with live output, type into it, list, read from an offset, a terminal, signal, and refusals with their codes', async () => {
  const client = createWorkerClient(worker.address);
  try {
    const { sessionId } = await client.sessions.createSession({ workspaceId: 'client-processes' });
    const processes = new Processes(client.tasks, sessionId);
    const seen: string[] = [];
    const errors: string[] = [];
    const echo = await processes.start('printf "ready\\n"; while read line; do echo "got $line"; echo "err $line" >&2; done; exit 3', {
      onStdout: (text) => seen.push(text),
      onStderr: (text) => errors.push(text),
    });
    assert.match(echo.processId, /^p\d+$/);
    assert.ok(echo.pid > 0);
    await echo.sendStdin('one\n');
    await echo.sendStdin(new TextEncoder().encode('two\n'), { eof: true });
    assert.deepEqual(await echo.wait(), { exitCode: 3 });
    assert.equal(seen.join(''), 'ready\ngot one\ngot two\n', 'the pieces joined are the output, in order, before wait resolves');
    assert.equal(errors.join(''), 'err one\nerr two\n');
    const read = await echo.output(6);
    assert.deepEqual([read.since, read.output.slice(0, 8), read.running, read.exit], [6, 'got one\n', false, { exitCode: 3 }]);

    const terminal = await processes.start('stty size; read x; stty size', { pty: { rows: 30, cols: 100 } });
    await waitFor(async () => (await terminal.output()).output.includes('30 100'), 20_000);
    await terminal.resize(40, 120);
    await terminal.sendStdin('\n');
    assert.deepEqual(await terminal.wait(), { exitCode: 0 });
    assert.match((await terminal.output()).output, /40 120/);

    const sleeper = await processes.start('exec sleep 1000');
    const listed = await processes.list();
    assert.deepEqual(
      listed.map((p) => [p.processId, p.running, p.pty]),
      [
        [echo.processId, false, false],
        [terminal.processId, false, true],
        [sleeper.processId, true, false],
      ],
    );
    assert.equal(listed[0]!.exitCode, 3);
    await sleeper.signal('TERM');
    assert.deepEqual(await sleeper.wait(), { exitCode: 143, killedBy: 'signal' });

    const code = (call: Promise<unknown>) =>
      call.then(
        () => Status.OK,
        (e: unknown) => (e as ClientError).code,
      );
    assert.equal(await code(sleeper.sendStdin('x')), Status.FAILED_PRECONDITION, 'an exited process takes no input');
    assert.equal(await code(processes.get('p99').output()), Status.NOT_FOUND);
    assert.equal(await code(echo.signal('BOOM')), Status.INVALID_ARGUMENT);
    await client.sessions.destroySession({ sessionId });
  } finally {
    client.close();
  }
});

test('the CLI moves bytes: fs.write --file (or - for stdin) and fs.read --raw give back every byte; a closed pipe ends it quietly', async () => {
  const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 256));
  const file = join(mkdtempSync(join(tmpdir(), 'codegen-cli-bytes-')), 'in.bin');
  writeFileSync(file, bytes);
  const cli = (input: Buffer | undefined, ...args: string[]) =>
    spawnSync(process.execPath, [CLI, '--address', worker.address, ...args], { timeout: 30_000, input, maxBuffer: 16 << 20 });
  const sessionId = cli(undefined, 'create', '--workspace', 'cli-bytes').stdout.toString().trim();
  const written = cli(undefined, 'run', sessionId, 'fs.write', '--arg', 'path=a.bin', '--file', file);
  assert.equal(written.status, 0, written.stderr.toString());
  assert.match(written.stdout.toString(), /bytes_written: 300000/);
  const read = cli(undefined, 'run', sessionId, 'fs.read', '--arg', 'path=a.bin', '--raw');
  assert.equal(read.status, 0, read.stderr.toString());
  assert.ok(read.stdout.equals(bytes), 'fs.read --raw gives the bytes alone');
  assert.equal(cli(bytes.subarray(0, 1000), 'run', sessionId, 'fs.write', '--arg', 'path=b.bin', '--file', '-').status, 0);
  assert.ok(cli(undefined, 'run', sessionId, 'fs.read', '--arg', 'path=b.bin', '--raw').stdout.equals(bytes.subarray(0, 1000)), 'from stdin');

  // | head -1: the CLI's stdout closes early.
  const piped = spawnSync(
    'sh',
    [
      '-c',
      `"$0" "$1" --address "$2" run "$3" run.python --code 'for i in range(200000): print(i)' | head -1`,
      process.execPath,
      CLI,
      worker.address,
      sessionId,
    ],
    {
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  assert.equal(piped.stdout, '0\n');
  assert.equal(piped.stderr, '', 'no EPIPE stack');
  assert.equal(cli(undefined, 'destroy', sessionId).status, 0);
});

test('the session object: files as bytes and text, code and commands with live output, typed results, install, checkpoint and restore, disposal', async () => {
  const sessionsBefore = (await worker.sessions.getCapacity({})).activeSessions;
  const codegen = CodegenWorker.connect(worker.address);
  try {
    await using session = await codegen.createSession({ language: 'python', workspaceId: 'objects' });
    assert.deepEqual(await session.files.write('data/a.bin', new Uint8Array([0, 255, 10])), { bytesWritten: 3 });
    assert.deepEqual([...(await session.files.read('data/a.bin'))], [0, 255, 10]);
    await session.files.write('main.py', 'import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)\n');
    assert.equal(await session.files.readText('main.py'), 'import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)\n');
    const listed = await session.files.list();
    assert.deepEqual(
      listed.map((e) => [e.name, e.type]),
      [
        ['data', 'directory'],
        ['main.py', 'file'],
      ],
    );
    assert.equal(typeof listed[1]!.size, 'number');

    const live: string[] = [];
    const ran = await session.run('print(6 * 7)', { onStdout: (text) => live.push(text) });
    assert.deepEqual(live, ['42\n'], 'as it printed');
    assert.deepEqual(ran, { stdout: '42\n', stderr: '', exitCode: 0, ended: 'completed', truncated: { stdout: false, stderr: false } });
    const failed = await session.commands.run('python3 main.py', { cwd: '.' });
    assert.deepEqual([failed.stdout, failed.stderr, failed.exitCode, failed.ended], ['out\n', 'err\n', 3, 'completed'], 'a failing process resolves');
    const slow = await session.run('import time\nprint("started", flush=True)\ntime.sleep(30)', { timeoutMs: 1000 });
    assert.deepEqual([slow.ended, slow.killedBy, slow.stdout], ['timeout', 'timeout', 'started\n']);

    // Refusals reject with the worker's code.
    const missing = await session.files.read('nope.txt').catch((e: unknown) => e);
    assert.ok(missing instanceof ClientError && missing.code === Status.NOT_FOUND, String(missing));

    const install = await session.install(['nothing-here']);
    assert.equal(install.ok, false, 'an install that failed resolves');
    assert.match(install.stderr, /./);

    const { checkpointId } = await session.checkpoint();
    await using restored = await codegen.restore(checkpointId);
    assert.equal(await restored.files.readText('main.py'), await session.files.readText('main.py'));
    assert.equal((await restored.run('print("restored")')).stdout, 'restored\n', 'a restored session finds its language');
    assert.equal((await codegen.session(restored.id).status()).language, 'python');
  } finally {
    codegen.close();
  }
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, sessionsBefore, 'both disposed at the end of the scope');
});

test('cp copies files and directories both ways, byte for byte, a file larger than a part in parts', async () => {
  const here = mkdtempSync(join(tmpdir(), 'codegen-cli-cp-'));
  try {
    const big = randomBytes(9 * 1024 * 1024 + 7); // two parts of 8 MiB
    mkdirSync(join(here, 'tree/sub/deeper'), { recursive: true });
    writeFileSync(join(here, 'tree/big.bin'), big);
    writeFileSync(join(here, 'tree/sub/a.txt'), 'a\n');
    writeFileSync(join(here, 'tree/sub/deeper/empty'), '');
    writeFileSync(join(here, 'one.bin'), big.subarray(0, 1000));
    const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, '--address', worker.address, ...args], { encoding: 'utf8', timeout: 60_000 });
    const sessionId = cli('create', '--workspace', 'cli-cp').stdout.trim();
    const up = cli('cp', join(here, 'tree'), `${sessionId}:copied`);
    assert.equal(up.status, 0, up.stderr);
    assert.equal(up.stdout, `3 files, ${big.length + 2} bytes\n`);
    assert.equal(cli('cp', join(here, 'one.bin'), `${sessionId}:one.bin`).status, 0);
    // The session sees what was sent.
    const sums = cli('run', sessionId, 'run.shell', '--command', 'sha256sum copied/big.bin one.bin && cat copied/sub/a.txt && wc -c < copied/sub/deeper/empty');
    assert.match(sums.stdout, new RegExp(`^${createHash('sha256').update(big).digest('hex')}  copied/big.bin\\n`));
    assert.match(sums.stdout, /\na\n0\n$/);
    const down = cli('cp', `${sessionId}:copied`, join(here, 'back'));
    assert.equal(down.status, 0, down.stderr);
    assert.ok(readFileSync(join(here, 'back/big.bin')).equals(big));
    assert.equal(readFileSync(join(here, 'back/sub/a.txt'), 'utf8'), 'a\n');
    assert.equal(readFileSync(join(here, 'back/sub/deeper/empty'), 'utf8'), '');
    assert.equal(cli('cp', `${sessionId}:one.bin`, join(here, 'one-back.bin')).status, 0);
    assert.ok(readFileSync(join(here, 'one-back.bin')).equals(big.subarray(0, 1000)));
    const neither = cli('cp', join(here, 'one.bin'), join(here, 'x'));
    assert.equal(neither.status, 1);
    assert.match(neither.stderr, /exactly one side must be <session>:<path>/);
    // What cp cannot copy is named, and makes the exit status 1, after the rest was copied.
    symlinkSync('a.txt', join(here, 'tree/sub/link'));
    const linked = cli('cp', join(here, 'tree/sub'), `${sessionId}:with-link`);
    assert.equal(linked.status, 1);
    assert.equal(linked.stdout, '2 files, 2 bytes\n');
    assert.match(linked.stderr, /^cp: skipped ".*\/tree\/sub\/link": a symbolic link/m);
    const missing = cli('cp', `${sessionId}:nope.txt`, join(here, 'nope'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^NOT_FOUND/);
    assert.equal(cli('destroy', sessionId).status, 0);
  } finally {
    rmSync(here, { recursive: true, force: true });
  }
});
