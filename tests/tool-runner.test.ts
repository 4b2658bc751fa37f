import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runHostTool } from '../src/sandbox/process/hostTools.js';

// Host tools run by the tool runner (src/sandbox/process/toolRunner.py), not forked from the
// worker: what runHostTool promised when it spawned them itself still holds.

test('a tool gets its stdin and the fixed environment; its stdout comes back byte for byte as text', async () => {
  assert.equal(await runHostTool('cat', [], 'line one\nline "two" \\ ü\n'), 'line one\nline "two" \\ ü\n');
  const env = await runHostTool('env', []);
  assert.deepEqual(env.trim().split('\n').sort(), ['LANG=C', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin']);
  // Bytes that are not UTF-8 come back as U+FFFD, as Node's own decoding made them.
  assert.equal(await runHostTool('printf', ['a\\377b']), 'a\uFFFDb');
});

test('a failure names the tool, its first argument, how it ended and its stderr; a tool that is not there says so', async () => {
  await assert.rejects(runHostTool('sh', ['-c', 'echo to stderr >&2; exit 3']), /^Error: sh -c failed \(exit 3\): to stderr$/);
  await assert.rejects(runHostTool('no-such-tool-here', ['x']), /no-such-tool-here x failed: .*No such file or directory/);
  await assert.rejects(runHostTool('sh', ['-c', 'kill -TERM $$']), /sh -c failed \(SIGTERM\)/);
});

test('a tool past its timeout is killed; a slow tool holds up no other', async () => {
  await assert.rejects(runHostTool('sleep', ['30'], '', 200), /sleep 30 failed \(SIGKILL\)/);
  // The slow one waits on a FIFO the test writes to once the quick ones are done.
  const dir = mkdtempSync(join(tmpdir(), 'tool-runner-'));
  try {
    const fifo = join(dir, 'fifo');
    await runHostTool('mkfifo', [fifo]);
    const order: string[] = [];
    const slow = runHostTool('sh', ['-c', 'read line < "$1"; echo "$line"', 'sh', fifo]).then((out) => order.push(out.trim()));
    for (let i = 0; i < 5; i++) await runHostTool('true', []).then(() => order.push(`quick ${i}`));
    writeFileSync(fifo, 'slow\n');
    await slow;
    assert.deepEqual(order, ['quick 0', 'quick 1', 'quick 2', 'quick 3', 'quick 4', 'slow']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an idle runner keeps no process alive, a tool being awaited does', async () => {
  // A script whose last act is a tool's reply: it prints it and then exits by itself.
  const script = `
    import { runHostTool } from ${JSON.stringify(new URL('../src/sandbox/process/hostTools.js', import.meta.url).href)};
    console.log((await runHostTool('sh', ['-c', 'sleep 0.3; echo done'])).trim());
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);
  assert.equal(stdout, 'done\n');
});

test('a runner killed fails the tools it was running, and the next tool starts a new one', async () => {
  await runHostTool('true', []);
  const runners = () =>
    readdirSync('/proc')
      .filter((pid) => /^\d+$/.test(pid))
      .filter((pid) => {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          return (
            Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid &&
            readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes("The worker's tool runner")
          );
        } catch {
          return false; // gone meanwhile
        }
      });
  const [runner] = runners();
  assert.ok(runner, 'this process has a tool runner');
  const cut = runHostTool('sleep', ['30']);
  process.kill(Number(runner), 'SIGKILL');
  await assert.rejects(cut, /sleep 30 failed: the tool runner exited \(SIGKILL\)/);
  assert.equal(await runHostTool('echo', ['again']), 'again\n');
  assert.equal(runners().length, 1);
  assert.notEqual(runners()[0], runner);
});
