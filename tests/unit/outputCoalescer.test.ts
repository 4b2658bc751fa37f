import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OutputCoalescer, type CoalescerClock } from '../../src/sandbox/process/outputCoalescer.js';
import type { OutputSource } from '../../src/sandbox/process/processSpec.js';

/** A clock that moves only when told; timers due by then run in order. */
class FakeClock implements CoalescerClock {
  private time = 0;
  private timers: { at: number; run: () => void }[] = [];

  now(): number {
    return this.time;
  }

  schedule(run: () => void, ms: number): () => void {
    const timer = { at: this.time + ms, run };
    this.timers.push(timer);
    return () => (this.timers = this.timers.filter((t) => t !== timer));
  }

  get waiting(): number {
    return this.timers.length;
  }

  /** Moves time on by `ms`, running each timer as it falls due. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      const next = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.time = next.at;
      next.run();
      await new Promise((resolve) => setImmediate(resolve)); // lets the sends run
    }
    this.time = end;
    await new Promise((resolve) => setImmediate(resolve)); // lets the sends run
  }
}

function harness(maxChars = 100) {
  const clock = new FakeClock();
  const sent: [OutputSource, string, number][] = [];
  const coalescer = new OutputCoalescer((source, text) => void sent.push([source, text, clock.now()]), clock, 20, maxChars);
  return { clock, sent, coalescer };
}

test('a line after a quiet moment goes out at once; lines within the interval wait for its end and go out together', async () => {
  const { clock, sent, coalescer } = harness();
  void coalescer.add('stdout', 'first');
  await clock.advance(0);
  assert.deepEqual(sent, [['stdout', 'first', 0]]);
  await clock.advance(5);
  void coalescer.add('stdout', 'a');
  void coalescer.add('stdout', 'b');
  await clock.advance(10);
  assert.equal(sent.length, 1, 'nothing more before 20 ms since the last message');
  void coalescer.add('stdout', 'c');
  await clock.advance(5);
  assert.deepEqual(sent.slice(1), [['stdout', 'a\nb\nc', 20]]);
  await clock.advance(100);
  assert.equal(sent.length, 2);
  assert.equal(clock.waiting, 0, 'no timer left when nothing waits');
});

test('a flood sends at most one message per stream per interval, every line once and in order', async () => {
  const { clock, sent, coalescer } = harness(1_000_000);
  const lines: string[] = [];
  for (let ms = 0; ms < 1000; ms++) {
    for (let i = 0; i < 10; i++) {
      const line = `${ms}.${i}`;
      lines.push(line);
      void coalescer.add('stdout', line);
    }
    await clock.advance(1);
  }
  await coalescer.flush();
  assert.ok(sent.length <= 1000 / 20 + 2, `${sent.length} messages`);
  assert.deepEqual(sent.map(([, text]) => text).join('\n'), lines.join('\n'));
  const gaps = sent.slice(1).map(([, , at], i) => at - sent[i]![2]);
  assert.ok(
    gaps.slice(0, -1).every((gap) => gap >= 20),
    `gaps ${gaps.join(',')}`,
  );
});

test('a message never passes maxChars: a full stream sends before it takes more, and the caller waits for it', async () => {
  const { clock, sent, coalescer } = harness(10);
  assert.equal(coalescer.add('stdout', '12345'), undefined);
  await clock.advance(0);
  assert.equal(coalescer.add('stdout', 'abcd'), undefined);
  assert.equal(coalescer.add('stdout', 'efgh'), undefined, '"abcd\nefgh" is 9 characters: it fits');
  const full = coalescer.add('stdout', 'ij');
  assert.ok(full instanceof Promise, 'one more would pass 10: the waiting lines go now, and the caller is told to wait');
  await full;
  assert.deepEqual(
    sent.map(([, text]) => text),
    ['12345', 'abcd\nefgh'],
  );
  assert.equal(sent[1]![2], 0, 'sent at once, not at the interval');
  await coalescer.flush();
  assert.deepEqual(
    sent.map(([, text]) => text),
    ['12345', 'abcd\nefgh', 'ij'],
  );
});

test('both streams go out at the same moments, the one whose oldest waiting line came first first', async () => {
  const { clock, sent, coalescer } = harness();
  void coalescer.add('stdout', 'start');
  await clock.advance(1);
  void coalescer.add('stderr', 'e1');
  void coalescer.add('stdout', 'o1');
  void coalescer.add('stderr', 'e2');
  await clock.advance(30);
  void coalescer.add('stdout', 'o2');
  void coalescer.add('stderr', 'e3');
  await coalescer.flush();
  assert.deepEqual(sent, [
    ['stdout', 'start', 0],
    ['stderr', 'e1\ne2', 20],
    ['stdout', 'o1', 20],
    ['stdout', 'o2', 31],
    ['stderr', 'e3', 31],
  ]);
});

test('flush sends everything at once, waits for sends in progress, and leaves no timer; a failed send is its rejection', async () => {
  const clock = new FakeClock();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const sent: string[] = [];
  const coalescer = new OutputCoalescer(
    async (_source, text) => {
      sent.push(text);
      if (text === 'slow') await gate;
      if (text === 'bad') throw new Error('send failed');
    },
    clock,
    20,
    100,
  );
  void coalescer.add('stdout', 'slow');
  await clock.advance(0);
  void coalescer.add('stderr', 'next');
  let flushed = false;
  const flushing = coalescer.flush().then(() => (flushed = true));
  await clock.advance(0);
  assert.deepEqual(sent, ['slow']);
  assert.equal(flushed, false, 'the flush waits for the send before it');
  release();
  await flushing;
  assert.deepEqual(sent, ['slow', 'next']);
  assert.equal(clock.waiting, 0);
  void coalescer.add('stdout', 'bad');
  await assert.rejects(coalescer.flush(), /send failed/);
});

test('close drops what waits and its timer', async () => {
  const { clock, sent, coalescer } = harness();
  void coalescer.add('stdout', 'x');
  coalescer.close();
  assert.equal(clock.waiting, 0);
  await clock.advance(100);
  assert.deepEqual(sent, []);
});
