import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cgroup } from '../../src/sandbox/confine/cgroups.js';
import { TaskGroups } from '../../src/sandbox/confine/taskGroups.js';
import { FakeCgroup } from '../helpers/fakeCgroup.js';

/** A session group whose children are names in a set: made by child(), gone by destroy(). */
function fakeSession(): { session: Cgroup; alive: Set<string> } {
  const session = new FakeCgroup('session');
  return { session, alive: session.alive };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

test('concurrent takes keep at most one group made ahead, and given back every group is removed', async () => {
  const { session, alive } = fakeSession();
  const groups = new TaskGroups(session, 8);
  const signal = new AbortController().signal;
  for (let round = 0; round < 3; round++) {
    const taken = await Promise.all(Array.from({ length: 8 }, () => groups.take({}, signal)));
    assert.equal(new Set(taken.map((g) => g.name)).size, 8, 'no two calls share a group');
    for (const group of taken) groups.giveBack(group);
    await settled();
    assert.equal(alive.size, 1, `left: ${[...alive].join(', ')} (only the one made ahead)`);
  }
});

test('past the bound a take waits for a group to be given back, and a cancel ends the wait', async () => {
  const { session, alive } = fakeSession();
  const groups = new TaskGroups(session, 2);
  const signal = new AbortController().signal;
  const [a, b] = await Promise.all([groups.take({}, signal), groups.take({}, signal)]);
  const cancel = new AbortController();
  const cancelled = groups.take({}, cancel.signal);
  let third: Cgroup | undefined;
  const waiting = groups.take({}, signal).then((g) => (third = g));
  await settled();
  assert.equal(third, undefined, 'the third call waits');
  cancel.abort(new Error('cancelled'));
  await assert.rejects(cancelled, /cancelled/);
  groups.giveBack(a);
  await waiting;
  assert.ok(third, 'the place given back went to the waiting call, not the cancelled one');
  groups.giveBack(b);
  groups.giveBack(third);
  await settled();
  assert.equal(alive.size, 1);
});
