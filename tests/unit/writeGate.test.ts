import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deferred } from '../../src/deferred.js';
import { WriteGate } from '../../src/sessions/writeGate.js';

// The order of events is the assertion: a copy starts only after the writes under way end, and
// a write asked for during a copy starts only after it.

test('a copy waits for the writes under way; writes asked for meanwhile wait for the copy', async () => {
  const gate = new WriteGate();
  const events: string[] = [];
  const first = deferred();
  const second = deferred();
  const writes = [
    gate.write(async () => {
      events.push('write 1 starts');
      await first.promise;
      events.push('write 1 ends');
    }),
    gate.write(async () => {
      events.push('write 2 starts');
      await second.promise;
      events.push('write 2 ends');
    }),
  ];
  const copy = gate.copy(async () => {
    events.push('copy');
    return 'copied';
  });
  await new Promise((resolve) => setImmediate(resolve));
  const late = gate.write(async () => void events.push('write 3'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ['write 1 starts', 'write 2 starts']);
  second.resolve();
  await writes[1];
  first.resolve();
  assert.equal(await copy, 'copied');
  await Promise.all([...writes, late]);
  assert.deepEqual(events, ['write 1 starts', 'write 2 starts', 'write 2 ends', 'write 1 ends', 'copy', 'write 3']);
});

test('copies go one at a time; a failed write or copy leaves the gate open', async () => {
  const gate = new WriteGate();
  const events: string[] = [];
  const held = deferred();
  const one = gate.copy(async () => {
    events.push('copy 1 starts');
    await held.promise;
    events.push('copy 1 ends');
  });
  const two = gate.copy(async () => void events.push('copy 2'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ['copy 1 starts']);
  held.resolve();
  await Promise.all([one, two]);
  assert.deepEqual(events, ['copy 1 starts', 'copy 1 ends', 'copy 2']);
  await assert.rejects(
    gate.write(() => Promise.reject(new Error('ENOSPC'))),
    /ENOSPC/,
  );
  await assert.rejects(
    gate.copy(() => Promise.reject(new Error('clone failed'))),
    /clone failed/,
  );
  assert.equal(await gate.copy(async () => 'again'), 'again');
  assert.equal(await gate.write(async () => 'written'), 'written');
});
