import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharedBudget } from '../../src/sharedBudget.js';

// An amount held for one kind of work, all sessions together: what does not fit waits in line,
// a release lets in as many as then fit, and an aborted wait gives up its place.

const settled = async (promise: Promise<unknown>) =>
  (await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise((r) => setImmediate(r, false)),
  ])) as boolean;

test('what fits is counted at once; what does not waits for releases, in line', async () => {
  const budget = new SharedBudget(100);
  await budget.hold(60);
  const second = budget.hold(60);
  const third = budget.hold(30);
  assert.equal(await settled(second), false, 'over the limit: waits');
  assert.equal(await settled(third), false, 'behind it in line, though it would fit');
  budget.release(60);
  assert.equal(await settled(second), true);
  assert.equal(await settled(third), true, 'room left after the first let in the next');
  assert.equal(budget.peak, 90);
});

test('an aborted wait rejects and passes its turn on; a count past the limit goes when nothing is held', async () => {
  const budget = new SharedBudget(10);
  await budget.hold(10);
  const stop = new AbortController();
  const aborted = budget.hold(5, stop.signal);
  const next = budget.hold(5);
  stop.abort(new Error('cancelled'));
  await assert.rejects(aborted, /cancelled/);
  budget.release(10);
  assert.equal(await settled(next), true);
  budget.release(5);
  await budget.hold(50);
  assert.equal(budget.peak, 50);
});
