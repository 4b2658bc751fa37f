import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BulkIntake, BUSY_LINGER_MS, BUSY_YOUNG_MS } from '../../src/grpc/bulkIntake.js';

const MB = 1024 * 1024;

function fakeClock() {
  let t = 1000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('large requests are admitted first come first served while their sizes fit; one larger than all waits for all', () => {
  const intake = new BulkIntake({ bytesAtOnce: 10 * MB, bytesPerSecondWhileBusy: 0 });
  const granted: string[] = [];
  const a = intake.admit(6 * MB, () => granted.push('a'));
  const b = intake.admit(6 * MB, () => granted.push('b'));
  const huge = intake.admit(50 * MB, () => granted.push('huge'));
  const c = intake.admit(1 * MB, () => granted.push('c')); // fits now, but waits behind the others
  assert.deepEqual([a.granted, b.granted, huge.granted, c.granted], [true, false, false, false]);
  a.release();
  assert.deepEqual(granted, ['b']);
  b.release();
  assert.deepEqual(granted, ['b', 'huge'], 'the huge one gets all of it, alone');
  huge.release();
  huge.release(); // a second release gives nothing back twice
  assert.deepEqual(granted, ['b', 'huge', 'c']);
  const d = intake.admit(9 * MB, () => granted.push('d'));
  assert.equal(d.granted, true, 'c holds 1 MB, d 9 MB: exactly full');
  c.release();
  d.release();
});

test('a request that leaves the queue (its call ended) lets the ones behind it go', () => {
  const intake = new BulkIntake({ bytesAtOnce: 4 * MB, bytesPerSecondWhileBusy: 0 });
  const granted: string[] = [];
  const a = intake.admit(4 * MB, () => granted.push('a'));
  const b = intake.admit(4 * MB, () => granted.push('b'));
  const c = intake.admit(2 * MB, () => granted.push('c'));
  b.release(); // cancelled while waiting
  assert.deepEqual(granted, []);
  a.release();
  assert.deepEqual(granted, ['c']);
  b.release();
  c.release();
  assert.equal(intake.admit(4 * MB, () => undefined).granted, true, 'everything was given back');
});

test('large requests are paced only while interactive calls are served, and for a moment after', () => {
  const clock = fakeClock();
  const rate = 100 * MB; // bytes a second
  const intake = new BulkIntake({ bytesAtOnce: 128 * MB, bytesPerSecondWhileBusy: rate, now: clock.now });
  assert.equal(intake.took(32 * MB), 0, 'a lone upload is not slowed');
  const call = intake.interactiveCall();
  const end = () => call.end();
  assert.equal(intake.busy(), true);
  // The burst is 20 ms at the pace; past it each byte costs 1/rate seconds, and waits add up.
  const burst = (rate / 1000) * 20;
  assert.equal(intake.took(burst), 0);
  const first = intake.took(MB);
  assert.ok(Math.abs(first - (MB / rate) * 1000) < 1e-6, `waits ${first} ms for 1 MB at 100 MB/s`);
  const second = intake.took(MB);
  assert.ok(Math.abs(second - 2 * (MB / rate) * 1000) < 1e-6, 'a second request waits behind the first');
  clock.advance(2 * (MB / rate) * 1000);
  assert.equal(intake.took(0), 0, 'once the time owed has passed, no wait');
  end();
  end(); // once
  clock.advance(BUSY_LINGER_MS - 1);
  assert.equal(intake.busy(), true, 'back-to-back calls keep the worker busy');
  assert.ok(intake.took(burst + MB) > 0, 'still paced past the burst');
  clock.advance(1);
  assert.equal(intake.busy(), false);
  assert.equal(intake.took(32 * MB), 0);
});

test('a call that turns to sending a large reply stops counting as interactive at once, and leaves no linger', () => {
  const clock = fakeClock();
  const intake = new BulkIntake({ bytesAtOnce: 128 * MB, bytesPerSecondWhileBusy: 100 * MB, now: clock.now });
  const downloading = intake.interactiveCall();
  const other = intake.interactiveCall();
  downloading.turnedBulk();
  assert.equal(intake.busy(), true, 'the other call is still served');
  other.end();
  clock.advance(BUSY_LINGER_MS);
  assert.equal(intake.busy(), false);
  const lone = intake.interactiveCall();
  lone.turnedBulk();
  lone.end(); // once: turning bulk was its end
  assert.equal(intake.busy(), false, 'a lone download is not slowed by its own call');
  assert.equal(intake.took(32 * MB), 0);
});

test('calls long in flight, with none begun since, no longer hold transfers to the pace', () => {
  const clock = fakeClock();
  const intake = new BulkIntake({ bytesAtOnce: 128 * MB, bytesPerSecondWhileBusy: 100 * MB, now: clock.now });
  const waiting = Array.from({ length: 48 }, () => intake.interactiveCall());
  assert.equal(intake.busy(), true);
  clock.advance(BUSY_YOUNG_MS - 1);
  assert.equal(intake.busy(), true);
  clock.advance(1);
  assert.equal(intake.busy(), false, '48 calls waiting their turn for a second are not what the pace protects');
  const quick = intake.interactiveCall();
  assert.equal(intake.busy(), true, 'a call just begun is');
  quick.end();
  clock.advance(BUSY_YOUNG_MS);
  assert.equal(intake.busy(), false, 'a second after the last call began, and longer after it ended');
  for (const call of waiting) call.end();
});

test('a pace of 0 never slows anything', () => {
  const intake = new BulkIntake({ bytesAtOnce: MB, bytesPerSecondWhileBusy: 0 });
  intake.interactiveCall();
  assert.equal(intake.took(1024 * MB), 0);
});

test('a holder that takes in nothing for stallMs while others wait is told to end, once; progress or an empty queue spares it', () => {
  const clock = fakeClock();
  const intake = new BulkIntake({ bytesAtOnce: 4 * MB, bytesPerSecondWhileBusy: 0, stallMs: 1000, now: clock.now });
  const stalled: string[] = [];
  const a = intake.admit(
    4 * MB,
    () => undefined,
    () => stalled.push('a'),
  );
  clock.advance(5000);
  intake.checkStalls();
  assert.deepEqual([...stalled], [], 'nobody waits: holding long is no harm');
  const b = intake.admit(
    4 * MB,
    () => undefined,
    () => stalled.push('b'),
  );
  a.progress();
  clock.advance(999);
  intake.checkStalls();
  assert.deepEqual([...stalled], [], 'it took something in under a second ago');
  clock.advance(1);
  intake.checkStalls();
  intake.checkStalls();
  assert.deepEqual(stalled, ['a'], 'told once');
  a.release();
  clock.advance(5000);
  intake.checkStalls();
  assert.deepEqual(stalled, ['a'], 'b holds now, and nobody waits behind it');
  b.release();
});
