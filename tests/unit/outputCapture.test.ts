import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { captureOutput, exitCodeOf } from '../../src/sandbox/process/outputCapture.js';
import type { OutputSource, RunOptions } from '../../src/sandbox/process/processSpec.js';

interface Harness {
  stdout: PassThrough;
  stderr: PassThrough;
  /** Each line passed on, with its stream (split out of the coalesced calls). */
  lines: [OutputSource, string][];
  /** How many onOutput calls there were. */
  calls: number;
  overLimit: number;
  result: ReturnType<typeof captureOutput>;
}

function capture(options: Partial<RunOptions> = {}): Harness {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const harness = { stdout, stderr, lines: [], calls: 0, overLimit: 0 } as unknown as Harness;
  const runOptions: RunOptions = {
    signal: new AbortController().signal,
    maxCaptureBytes: 1024,
    onOutput: (source, text) => {
      harness.calls++;
      for (const line of text.split('\n')) harness.lines.push([source, line]);
    },
    ...options,
  };
  harness.result = captureOutput(stdout, stderr, runOptions, () => harness.overLimit++);
  return harness;
}

/** Turns the event loop until `condition` holds (failing after a bounded number of turns). */
async function until(condition: () => boolean): Promise<void> {
  for (let turns = 0; !condition(); turns++) {
    if (turns > 10_000) throw new Error('condition not met');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Writes the chunks one at a time, letting the capture read each before the next. */
async function feed(stream: PassThrough, chunks: (string | Buffer)[]): Promise<void> {
  for (const chunk of chunks) {
    stream.write(chunk);
    await tick();
  }
}

test('lines split across chunks are passed whole, each labelled with its stream; a last line without newline too', async () => {
  const h = capture();
  await feed(h.stdout, ['hel', 'lo\nwor', 'ld\n', 'tail']);
  await feed(h.stderr, ['oops\r\n']);
  h.stdout.end();
  h.stderr.end();
  const { stdout, stderr, outputLimitExceeded } = await h.result;
  assert.deepEqual(
    h.lines.filter(([s]) => s === 'stdout').map(([, l]) => l),
    ['hello', 'world', 'tail'],
  );
  assert.deepEqual(
    h.lines.filter(([s]) => s === 'stderr').map(([, l]) => l),
    ['oops'],
    'a CRLF ending is removed',
  );
  assert.deepEqual(stdout, { text: 'hello\nworld\ntail', truncated: false });
  assert.deepEqual(stderr, { text: 'oops\r\n', truncated: false });
  assert.equal(outputLimitExceeded, false);
});

test('a multi-byte character split between chunks arrives whole', async () => {
  const h = capture();
  const bytes = Buffer.from('é中😀\n');
  await feed(h.stdout, [bytes.subarray(0, 1), bytes.subarray(1, 4), bytes.subarray(4, 9), bytes.subarray(9)]);
  h.stdout.end();
  h.stderr.end();
  await h.result;
  assert.deepEqual(h.lines, [['stdout', 'é中😀']]);
});

test('only the first maxCaptureBytes of a stream are kept, and the result says it was truncated; lines keep flowing', async () => {
  const h = capture({ maxCaptureBytes: 10 });
  await feed(h.stdout, ['0123456\n', '789abc\n', 'more\n']);
  await feed(h.stderr, ['0123456789']);
  const single = capture({ maxCaptureBytes: 4 });
  await feed(single.stdout, ['abcdef']);
  single.stdout.end();
  single.stderr.end();
  assert.deepEqual((await single.result).stdout, { text: 'abcd', truncated: true }, 'cut inside the only chunk');
  h.stdout.end();
  h.stderr.end();
  const { stdout, stderr } = await h.result;
  assert.deepEqual(stdout, { text: '0123456\n78', truncated: true });
  assert.deepEqual(stderr, { text: '0123456789', truncated: false }, 'exactly the limit is not truncated');
  assert.deepEqual(
    h.lines.filter(([s]) => s === 'stdout').map(([, l]) => l),
    ['0123456', '789abc', 'more'],
  );
});

test('overLimit is called once, when both streams together pass maxOutputBytes', async () => {
  const h = capture({ maxOutputBytes: 10 });
  await feed(h.stdout, ['12345']);
  await feed(h.stderr, ['12345']);
  assert.equal(h.overLimit, 0, 'exactly the limit is allowed');
  await feed(h.stdout, ['6']);
  assert.equal(h.overLimit, 1);
  await feed(h.stderr, ['789', 'more']);
  h.stdout.end();
  h.stderr.end();
  const { outputLimitExceeded } = await h.result;
  assert.equal(h.overLimit, 1);
  assert.equal(outputLimitExceeded, true);
});

test('without maxOutputBytes there is no output limit', async () => {
  const h = capture({ maxOutputBytes: 0 });
  await feed(h.stdout, ['x'.repeat(5000)]);
  h.stdout.end();
  h.stderr.end();
  assert.equal((await h.result).outputLimitExceeded, false);
  assert.equal(h.overLimit, 0);
});

test('a run of 64 KiB characters without a newline is passed in pieces rather than buffered', async () => {
  const h = capture();
  await feed(h.stdout, ['a'.repeat(64 * 1024 + 10)]);
  // Out before the stream ends (the capture only resolves at its end).
  await until(() => h.lines.length > 0);
  assert.deepEqual(
    h.lines.map(([, l]) => l.length),
    [64 * 1024],
  );
  await feed(h.stdout, ['bb\n']);
  h.stdout.end();
  h.stderr.end();
  await h.result;
  assert.deepEqual(
    h.lines.map(([, l]) => l),
    ['a'.repeat(64 * 1024), `${'a'.repeat(10)}bb`],
  );
});

test('lines arriving together are passed in one call; the capture resolves only once all were passed', async () => {
  const h = capture();
  await feed(h.stdout, ['one\ntwo\nthree\n']);
  h.stdout.end();
  h.stderr.end();
  await h.result;
  assert.deepEqual(
    h.lines.map(([, l]) => l),
    ['one', 'two', 'three'],
  );
  assert.equal(h.calls, 1);
});

test('reading stops while a full call waits to be taken (backpressure to the process)', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const seen: string[] = [];
  const h = capture({
    onOutput: async (_source, text) => {
      seen.push(...text.split('\n'));
      if (text === 'first') await gate;
    },
  });
  await feed(h.stdout, ['first\n']);
  await until(() => seen.length === 1);
  const line = `${'x'.repeat(1023)}\n`;
  const lines = 512; // 512 KiB: far more than a call and the stream's own buffers hold
  for (let i = 0; i < lines; i++) h.stdout.write(line);
  for (let i = 0; i < 50; i++) await tick();
  assert.deepEqual(seen, ['first'], 'nothing more is passed while the first call is pending');
  assert.ok(h.stdout.readableLength > 0, 'and the rest waits unread in the stream');
  release();
  h.stdout.end();
  h.stderr.end();
  await h.result;
  assert.equal(seen.length, 1 + lines);
});

test('a stream destroyed early ends the capture with what arrived instead of failing it', async () => {
  const h = capture();
  await feed(h.stdout, ['partial\n']);
  h.stdout.destroy();
  h.stderr.end();
  const { stdout } = await h.result;
  assert.equal(stdout.text, 'partial\n');
});

test('exitCodeOf: the exit code, or 128 + the number of the signal that killed the process', () => {
  assert.equal(exitCodeOf(0, null), 0);
  assert.equal(exitCodeOf(3, null), 3);
  assert.equal(exitCodeOf(null, 'SIGKILL'), 137);
  assert.equal(exitCodeOf(null, 'SIGTERM'), 143);
  assert.equal(exitCodeOf(null, 'SIGSEGV'), 139);
  assert.equal(exitCodeOf(null, 'SIGXCPU'), 152);
  assert.equal(exitCodeOf(null, 'SIGXFSZ'), 153);
});

test('exitCodeOf: every signal that ends a process maps to 128 + its number', () => {
  const wrong = ['SIGSTKFLT', 'SIGVTALRM', 'SIGPROF', 'SIGIO', 'SIGPWR', 'SIGSYS'].filter(
    (name) => exitCodeOf(null, name) !== 128 + (constants.signals as Record<string, number>)[name]!,
  );
  assert.deepEqual(wrong, []);
});
