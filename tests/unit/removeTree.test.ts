import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { at, openChildDirectory, openTrustedDirectory } from '../../src/storage/beneath.js';
import { removeTree } from '../../src/storage/removeTree.js';

const base = await mkdtemp(join(tmpdir(), 'unit-remove-'));
after(() => rm(base, { recursive: true, force: true }));
const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

test('a tree is removed whole; what its links point to is left alone', async () => {
  await mkdir(join(base, 'keep'));
  await writeFile(join(base, 'keep', 'precious.txt'), 'keep me');
  const tree = join(base, 'tree');
  await mkdir(join(tree, 'a', 'b'), { recursive: true });
  for (let i = 0; i < 100; i++) await writeFile(join(tree, 'a', `f${i}`), 'x');
  await symlink(join(base, 'keep'), join(tree, 'a', 'b', 'to-keep'));
  await symlink(join(base, 'keep', 'precious.txt'), join(tree, 'file-link'));
  await removeTree(tree);
  assert.equal(await exists(tree), false);
  assert.equal(await readFile(join(base, 'keep', 'precious.txt'), 'utf8'), 'keep me');
});

test('a tree 150 levels deep (deeper than the descriptors one removal holds open) and longer than PATH_MAX is removed too', async () => {
  const tree = join(base, 'deep');
  await mkdir(tree);
  // 150 levels of 100-character names (a path of 15 000 bytes), made from each level's descriptor.
  const name = 'd'.repeat(100);
  let dir = await openTrustedDirectory(tree);
  for (let level = 0; level < 150; level++) {
    await mkdir(at(dir, name));
    await writeFile(at(dir, 'file'), 'x');
    const child = await openChildDirectory(dir, name);
    await dir.close();
    dir = child;
  }
  await dir.close();
  await removeTree(tree);
  assert.equal(await exists(tree), false);
});

test('removing a path that does not exist, or under a parent that does not, is no error', async () => {
  await removeTree(join(base, 'never-was'));
  await removeTree(join(base, 'no-parent', 'child'));
});

test('a file or a link given directly is unlinked, never followed', async () => {
  await writeFile(join(base, 'target.txt'), 'target');
  await symlink(join(base, 'target.txt'), join(base, 'link'));
  await removeTree(join(base, 'link'));
  assert.equal(await exists(join(base, 'link')), false);
  assert.equal(await readFile(join(base, 'target.txt'), 'utf8'), 'target');
  await removeTree(join(base, 'target.txt'));
  assert.equal(await exists(join(base, 'target.txt')), false);
});
