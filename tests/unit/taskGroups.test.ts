import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cgroup } from '../../src/sandbox/confine/cgroups.js';
import { TaskGroups } from '../../src/sandbox/confine/taskGroups.js';
import { FakeCgroup } from '../helpers/fakeCgroup.js';
import { keepingAlive } from '../helpers/keepingAlive.js';

/** A session group whose children are names in a set: made by child(), gone by destroy(). */
function fakeSession(): { session: Cgroup; alive: Set<string> } {
  const session = new FakeCgroup('session');
  return { session, alive: session.alive };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

test('groups given back are kept and renewed for later calls: rounds of concurrent takes make no more, and no two calls share one', async () => {
  const { session, alive } = fakeSession();
  const groups = new TaskGroups(session, 8);
  const signal = new AbortController().signal;
  for (let round = 0; round < 3; round++) {
    const taken = await Promise.all(Array.from({ length: 8 }, () => groups.take({}, signal)));
    assert.equal(new Set(taken.map((g) => g.name)).size, 8, 'no two calls share a group');
    if (round > 0)
      assert.ok(
        taken.every((g) => (g as FakeCgroup).renewals === round),
        'every group was renewed before it was used again',
      );
    for (const group of taken) groups.giveBack(group);
    await settled();
    assert.ok(alive.size <= 9, `at most the bound and one made ahead exist: ${alive.size}`);
  }
  assert.equal(alive.size, 9, 'the 8 kept, and the one made ahead during the first round');
});

test('a group that does not empty is removed, not kept', async () => {
  const { session, alive } = fakeSession();
  const groups = new TaskGroups(session, 4);
  const signal = new AbortController().signal;
  const stuck = (await groups.take({}, signal)) as FakeCgroup;
  stuck.empties = false;
  groups.giveBack(stuck);
  await settled();
  assert.equal(stuck.destroyed, true);
  assert.equal(stuck.renewals, 0);
  const next = await groups.take({}, signal);
  assert.notEqual(next.name, stuck.name);
  assert.ok(!alive.has(stuck.name));
});

test('a group that cannot be removed yet keeps its place until it is: the bound holds', () =>
  keepingAlive(async () => {
    const { session, alive } = fakeSession();
    const groups = new TaskGroups(session, 2, 5);
    const signal = new AbortController().signal;
    const [stuck, other] = (await Promise.all([groups.take({}, signal), groups.take({}, signal)])) as FakeCgroup[];
    stuck!.empties = false;
    stuck!.destroyFailures = 2;
    groups.giveBack(stuck);
    let third: Cgroup | undefined;
    const waiting = groups.take({}, signal).then((g) => (third = g));
    await settled();
    assert.equal(third, undefined, 'no place while the stuck group still exists');
    assert.ok(alive.has(stuck!.name));
    await waiting; // the place comes back once a later try removes it
    assert.equal(stuck!.destroyed, true);
    assert.ok(!alive.has(stuck!.name));
    groups.giveBack(other);
    groups.giveBack(third);
  }));

test('a call narrowing its memory gets a group no call has used; with every place kept, the oldest kept one makes way', async () => {
  const { session, alive } = fakeSession();
  const groups = new TaskGroups(session, 2);
  const signal = new AbortController().signal;
  const [a, b] = await Promise.all([groups.take({}, signal), groups.take({}, signal)]);
  groups.giveBack(a);
  groups.giveBack(b);
  await settled();
  const used = new Set([a!.name, b!.name]);
  const narrowed = (await groups.take({ memoryBytes: 64 << 20 }, signal)) as FakeCgroup;
  assert.ok(!used.has(narrowed.name), 'a new group');
  assert.deepEqual(narrowed.limits.at(-1), { memoryBytes: 64 << 20 });
  assert.equal((a as FakeCgroup).destroyed, true, 'the least recently given back made way');
  assert.equal((b as FakeCgroup).destroyed, false);
  assert.ok([...alive].filter((n) => n !== narrowed.name && n !== b!.name).length <= 1, `the bound holds (plus one made ahead): ${[...alive].join(', ')}`);
  const plain = await groups.take({}, signal);
  assert.equal(plain.name, b!.name, 'a call not narrowing memory gets the kept one');
});

test('past the bound a take waits for a group to be given back, and a cancel ends the wait', async () => {
  const { session } = fakeSession();
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
  assert.equal((third as Cgroup | undefined)?.name, a!.name, 'the group given back went to the waiting call, not the cancelled one');
  groups.giveBack(b);
  groups.giveBack(third);
});

test('reserve: a group for a child forked ahead only while one is free now; never waiting, never once disposed', async () => {
  const { session } = fakeSession();
  const groups = new TaskGroups(session, 2);
  const signal = new AbortController().signal;
  const reserved = await groups.reserve();
  assert.ok(reserved, 'one free: reserved');
  const call = await groups.take({}, signal);
  assert.equal(groups.reserve(), undefined, 'both places taken: none, at once');
  groups.giveBack(reserved);
  await settled();
  const again = await groups.reserve();
  assert.equal(again, reserved, 'the one given back, kept and renewed');
  groups.giveBack(call);
  groups.giveBack(again);
  await groups.dispose();
  assert.equal(groups.reserve(), undefined, 'none once disposed');
});
