import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { at, inDirectoryNoFollow, openRegularFileNoFollow, openTrustedDirectory, OutsideTreeError, TreeResolver } from '../../src/storage/beneath.js';

// Path resolution inside a tree the session controls, on a temporary directory:
//   outside/secret.txt            (must never be reached)
//   ws/                           (the tree; its code sees it as /workspace)
//     dir/file.txt
//     rel -> dir                  (a link inside)
//     abs -> /workspace/dir       (an absolute link into the tree's alias)
//     up -> ../outside            (a link out)
//     root -> /                   (an absolute link out)
//     loop -> loop
const base = await mkdtemp(join(tmpdir(), 'unit-beneath-'));
after(() => rm(base, { recursive: true, force: true }));
const ws = join(base, 'ws');
await mkdir(join(base, 'outside'));
await writeFile(join(base, 'outside', 'secret.txt'), 'secret');
await mkdir(join(ws, 'dir'), { recursive: true });
await writeFile(join(ws, 'dir', 'file.txt'), 'inside');
await symlink('dir', join(ws, 'rel'));
await symlink('/workspace/dir', join(ws, 'abs'));
await symlink('../outside', join(ws, 'up'));
await symlink('/', join(ws, 'root'));
await symlink('loop', join(ws, 'loop'));

async function withTree<T>(work: (tree: TreeResolver) => Promise<T>): Promise<T> {
  const tree = await TreeResolver.open(ws, ['/workspace']);
  try {
    return await work(tree);
  } finally {
    await tree.close();
  }
}

async function readThrough(tree: TreeResolver, segments: string[]): Promise<string> {
  const found = await tree.locate(segments);
  assert.ok(found?.stat, `${segments.join('/')} exists`);
  return readFile(at(found.dir, found.name), 'utf8');
}

test('plain paths and links that stay inside (relative, or absolute into the alias) resolve', async () => {
  await withTree(async (tree) => {
    assert.equal(await readThrough(tree, ['dir', 'file.txt']), 'inside');
    assert.equal(await readThrough(tree, ['rel', 'file.txt']), 'inside');
    assert.equal(await readThrough(tree, ['abs', 'file.txt']), 'inside');
    assert.equal(await readThrough(tree, ['dir', '..', 'dir', 'file.txt']), 'inside');
  });
});

test('links and `..` leading outside the tree are refused with OutsideTreeError', async () => {
  await withTree(async (tree) => {
    for (const segments of [
      ['up', 'secret.txt'],
      ['root', 'etc', 'passwd'],
      ['..', 'outside', 'secret.txt'],
      ['dir', '..', '..', 'outside'],
    ]) {
      await assert.rejects(tree.locate(segments), OutsideTreeError, segments.join('/'));
    }
    await assert.rejects(tree.directory(['up']), OutsideTreeError);
  });
});

test('a final link is followed (a write through it writes its target); a missing name is found without a stat', async () => {
  await withTree(async (tree) => {
    const found = await tree.locate(['rel']);
    assert.ok(found?.stat?.isDirectory(), 'the link to dir resolves to the directory');
    const missing = await tree.locate(['dir', 'new.txt']);
    assert.equal(missing?.name, 'new.txt');
    assert.equal(missing?.stat, undefined);
    assert.equal(await tree.locate([]), undefined, 'the root has no parent entry');
  });
});

test('a link loop ends with ELOOP, and a file on the way with ENOTDIR', async () => {
  await withTree(async (tree) => {
    await assert.rejects(tree.locate(['loop']), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ELOOP');
    await assert.rejects(tree.locate(['dir', 'file.txt', 'below']), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOTDIR');
  });
});

test('with create, missing directories on the way are made inside the tree', async () => {
  await withTree(async (tree) => {
    const found = await tree.locate(['made', 'deeper', 'f.txt'], { owner: undefined });
    assert.equal(found?.name, 'f.txt');
    await writeFile(at(found.dir, 'f.txt'), 'new');
  });
  assert.equal(await readFile(join(ws, 'made', 'deeper', 'f.txt'), 'utf8'), 'new');
});

test('the no-follow helpers never pass through a link, and `at` takes single names only', async () => {
  const root = await openTrustedDirectory(ws);
  try {
    assert.equal(await inDirectoryNoFollow(root, ['dir'], async () => 'reached'), 'reached');
    await assert.rejects(
      inDirectoryNoFollow(root, ['rel'], async () => 'reached'),
      (err: unknown) => ['ENOTDIR', 'ELOOP'].includes((err as NodeJS.ErrnoException).code!),
    );
    const file = await openRegularFileNoFollow(root, ['dir', 'file.txt']);
    assert.ok(file);
    await file.close();
    assert.equal(await openRegularFileNoFollow(root, ['rel', 'file.txt']), undefined, 'a link on the way');
    assert.equal(await openRegularFileNoFollow(root, ['dir']), undefined, 'not a regular file');
    assert.equal(await openRegularFileNoFollow(root, ['dir', 'nope']), undefined);
    for (const name of ['', '.', '..', 'a/b', 'a\0b']) assert.throws(() => at(root, name), /not a single path component/, JSON.stringify(name));
  } finally {
    await root.close();
  }
  await assert.rejects(openTrustedDirectory(join(ws, 'rel')), (err: unknown) => ['ENOTDIR', 'ELOOP'].includes((err as NodeJS.ErrnoException).code!));
});
