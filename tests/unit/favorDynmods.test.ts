import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DYNMODS_HIERARCHY, favorDynamicModifications, favorsDynmods } from '../../src/sandbox/confine/favorDynmods.js';

const V1 = 'cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n';

test('favordynmods is found on a cgroup or cgroup2 mount, as a whole option, and nowhere else', () => {
  assert.equal(favorsDynmods(V1), false);
  assert.equal(favorsDynmods(`${V1}cgroup /run/x cgroup rw,relatime,favordynmods,name=x 0 0\n`), true);
  assert.equal(favorsDynmods('cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,favordynmods 0 0\n'), true);
  assert.equal(favorsDynmods('tmpfs /tmp/favordynmods tmpfs rw,favordynmods 0 0\n'), false);
  assert.equal(favorsDynmods('cgroup /sys/fs/cgroup/cpu cgroup rw,nofavordynmods 0 0\n'), false);
});

test('a hierarchy already favouring moves is used as it is: nothing is mounted', async () => {
  const mounts: string[][] = [];
  const outcome = await favorDynamicModifications(
    '/nonexistent/never-made',
    async (args) => mounts.push(args),
    async () => `${V1}cgroup2 /sys/fs/cgroup/unified cgroup2 rw,favordynmods 0 0\n`,
  );
  assert.deepEqual(outcome, { quick: true, how: 'a cgroup hierarchy has favordynmods' });
  assert.deepEqual(mounts, []);
});

test('the worker mounts a named hierarchy of no controllers; moves are quick once the kernel shows the option', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'dynmods-')), 'cgroup-dynmods');
  let table = V1;
  const mounts: string[][] = [];
  const outcome = await favorDynamicModifications(
    dir,
    async (args) => {
      mounts.push(args);
      table += `cgroup ${dir} cgroup rw,relatime,favordynmods,name=${DYNMODS_HIERARCHY} 0 0\n`;
    },
    async () => table,
  );
  assert.deepEqual(mounts, [['-t', 'cgroup', '-o', `none,name=${DYNMODS_HIERARCHY},favordynmods`, 'cgroup', dir]]);
  assert.equal(outcome.quick, true);
});

test('a mount refused because another worker mounted the hierarchy first: moves are quick', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'dynmods-')), 'cgroup-dynmods');
  let table = V1;
  const outcome = await favorDynamicModifications(
    dir,
    async () => {
      table += `cgroup ${dir} cgroup rw,relatime,favordynmods,name=${DYNMODS_HIERARCHY} 0 0\n`; // the other worker's
      throw new Error('mount: cgroup already mounted');
    },
    async () => table,
  );
  assert.equal(outcome.quick, true);
});

test('a mount refused, or an option the kernel drops, leaves moves slow and says why; nothing throws', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'dynmods-')), 'cgroup-dynmods');
  const refused = await favorDynamicModifications(
    dir,
    () => Promise.reject(new Error('mount: permission denied')),
    async () => V1,
  );
  assert.equal(refused.quick, false);
  assert.match(!refused.quick ? refused.why : '', /permission denied/);
  const ignored = await favorDynamicModifications(
    dir,
    async () => undefined,
    async () => V1,
  );
  assert.deepEqual(ignored, { quick: false, why: 'the kernel ignored favordynmods' });
  const unreadable = await favorDynamicModifications(
    dir,
    async () => undefined,
    () => Promise.reject(new Error('EACCES')),
  );
  assert.equal(unreadable.quick, false);
});
