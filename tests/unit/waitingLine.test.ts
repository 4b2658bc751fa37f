import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WaitingLine } from '../../src/waitingLine.js';

const settled = () => new Promise((resolve) => setImmediate(resolve));
const never = new AbortController().signal;

test('calls are woken in line, one per wake, and one put back in front keeps its place', async () => {
  const line = new WaitingLine();
  const woken: string[] = [];
  const wait = (name: string, front = false) => line.wait(never, front).then(() => woken.push(name));
  const all = [wait('a'), wait('b'), wait('c')];
  line.wakeFirst();
  line.wakeFirst();
  await settled();
  assert.deepEqual(woken, ['a', 'b'], 'two wakes in a row reach two calls');
  all.push(wait('a again', true));
  line.wakeFirst();
  await settled();
  assert.deepEqual(woken, ['a', 'b', 'a again']);
  line.wakeFirst();
  await Promise.all(all);
  assert.equal(line.length, 0);
});

test('a call aborted while it waits leaves the line; one woken and aborted at once passes the wake on', async () => {
  const line = new WaitingLine();
  const gone = new AbortController();
  const cancelled = line.wait(gone.signal);
  let next = false;
  const waiting = line.wait(never).then(() => (next = true));
  gone.abort(new Error('gone'));
  await assert.rejects(cancelled, /gone/);
  assert.equal(line.length, 1);
  const both = new AbortController();
  const wokenAndGone = line.wait(both.signal, true);
  line.wakeFirst();
  both.abort(new Error('gone too'));
  await assert.rejects(wokenAndGone, /gone too/);
  await waiting;
  assert.equal(next, true, 'the wake went to the next in line');
  await assert.rejects(line.wait(gone.signal), /gone/, 'an aborted signal does not wait at all');
});
