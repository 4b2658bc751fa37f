import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { EventQueue } from '../../src/tasks/eventQueue.js';

/** Whether a promise has settled by the time pending callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await tick();
  return done;
}

async function drain<T>(queue: EventQueue<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of queue) items.push(item);
  return items;
}

test('items come out in the order they were pushed, and iteration ends after close', async () => {
  const queue = new EventQueue<number>();
  for (let i = 0; i < 5; i++) await queue.push(i);
  queue.close();
  assert.deepEqual(await drain(queue), [0, 1, 2, 3, 4]);
});

test('a consumer waiting on an empty queue is woken by a push, then by close', async () => {
  const queue = new EventQueue<string>();
  const consumed = drain(queue);
  assert.equal(await settled(consumed), false, 'waits while empty and open');
  await queue.push('a');
  await tick();
  await queue.push('b');
  assert.equal(await settled(consumed), false);
  queue.close();
  assert.deepEqual(await consumed, ['a', 'b']);
});

test('push resolves at once below the high-water mark and waits at it until the consumer takes one', async () => {
  const queue = new EventQueue<number>(3);
  assert.equal(await settled(queue.push(1)), true);
  assert.equal(await settled(queue.push(2)), true);
  const third = queue.push(3);
  assert.equal(await settled(third), false, 'the queue holds its high-water mark: the producer waits');
  const iterator = queue[Symbol.asyncIterator]();
  assert.deepEqual(await iterator.next(), { value: 1, done: false });
  assert.equal(await settled(third), true, 'taking one makes room');
});

test('every producer waiting for room is released by close, and later pushes are dropped', async () => {
  const queue = new EventQueue<number>(1);
  const waiting = [queue.push(1), queue.push(2)];
  assert.equal(await settled(Promise.race(waiting)), false);
  queue.close();
  await Promise.all(waiting);
  assert.equal(await settled(queue.push(3)), true, 'a push after close resolves at once');
  // What was queued before close is still delivered; what came after is not.
  assert.deepEqual(await drain(queue), [1, 2]);
});

test('a slow consumer bounds the queue: a fast producer never gets more than the mark ahead', async () => {
  const mark = 4;
  const queue = new EventQueue<number>(mark);
  let produced = 0;
  let maxAhead = 0;
  let consumed = 0;
  const producer = (async () => {
    for (let i = 0; i < 50; i++) {
      await queue.push(i);
      produced++;
      maxAhead = Math.max(maxAhead, produced - consumed);
    }
    queue.close();
  })();
  const seen: number[] = [];
  for await (const item of queue) {
    seen.push(item);
    consumed++;
    await tick();
  }
  await producer;
  assert.deepEqual(
    seen,
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.ok(maxAhead <= mark, `the producer got ${maxAhead} ahead`);
});
