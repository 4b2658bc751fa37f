import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { diffTrees, namesIn, scanTree, treeSize, type Tree, type TreeEntry } from '../../src/storage/fileTree.js';

const file = (over: Partial<TreeEntry> = {}): TreeEntry => ({ type: 'file', size: 10, mtimeMs: 1000, mode: 0o644, ...over });
const tree = (entries: Record<string, TreeEntry>): Tree => new Map(Object.entries(entries));

test('identical trees have no changes', () => {
  const t = tree({
    a: file(),
    d: { type: 'directory', size: 0, mtimeMs: 0, mode: 0o755 },
    l: { type: 'symlink', size: 0, mtimeMs: 5, mode: 0o777, target: 'a' },
  });
  assert.deepEqual(diffTrees(t, new Map(t)), { changed: [], deleted: [] });
});

test('added paths are changed; paths gone are deleted', () => {
  const before = tree({ keep: file(), gone: file() });
  const now = tree({ keep: file(), fresh: file() });
  assert.deepEqual(diffTrees(before, now), { changed: ['fresh'], deleted: ['gone'] });
  assert.deepEqual(diffTrees(new Map(), now), { changed: ['keep', 'fresh'], deleted: [] });
  assert.deepEqual(diffTrees(before, new Map()), { changed: [], deleted: ['keep', 'gone'] });
});

test('a change of size, mtime, mode, type or link target is a change', () => {
  const before = tree({
    size: file(),
    mtime: file(),
    mode: file(),
    type: file(),
    link: { type: 'symlink', size: 0, mtimeMs: 1, mode: 0o777, target: 'x' },
    same: file(),
  });
  const now = tree({
    size: file({ size: 11 }),
    mtime: file({ mtimeMs: 1001 }),
    mode: file({ mode: 0o755 }),
    type: { type: 'directory', size: 10, mtimeMs: 1000, mode: 0o644 },
    link: { type: 'symlink', size: 0, mtimeMs: 1, mode: 0o777, target: 'y' },
    same: file(),
  });
  assert.deepEqual(diffTrees(before, now), { changed: ['size', 'mtime', 'mode', 'type', 'link'], deleted: [] });
});

const scratch = await mkdtemp(join(tmpdir(), 'unit-filetree-'));
after(() => rm(scratch, { recursive: true, force: true }));

test('scanTree records files, directories and symlinks (not followed) with prefix, mode and size', async () => {
  const root = join(scratch, 'scan');
  await mkdir(join(root, 'sub'), { recursive: true });
  await writeFile(join(root, 'sub', 'f.txt'), 'hello');
  await chmod(join(root, 'sub', 'f.txt'), 0o600);
  await utimes(join(root, 'sub', 'f.txt'), 100, 100);
  await symlink('/etc', join(root, 'out'));
  await symlink('sub/f.txt', join(root, 'in'));
  const scanned = await scanTree(root, 'workspace/');
  assert.deepEqual([...scanned.keys()], ['workspace/in', 'workspace/out', 'workspace/sub', 'workspace/sub/f.txt'], 'depth first, names sorted');
  assert.deepEqual(scanned.get('workspace/sub/f.txt'), { type: 'file', size: 5, mtimeMs: 100_000, mode: 0o600 });
  assert.deepEqual({ ...scanned.get('workspace/sub'), mode: 0 }, { type: 'directory', size: 0, mtimeMs: 0, mode: 0 });
  assert.equal(scanned.get('workspace/out')?.type, 'symlink');
  assert.equal(scanned.get('workspace/out')?.target, '/etc');
  assert.equal(scanned.get('workspace/in')?.target, 'sub/f.txt');
  // A rescan after a write sees exactly that file as changed.
  await writeFile(join(root, 'sub', 'f.txt'), 'hello!');
  assert.deepEqual(diffTrees(scanned, await scanTree(root, 'workspace/')), { changed: ['workspace/sub/f.txt'], deleted: [] });
});

test('a missing root scans as empty; treeSize adds file sizes; namesIn lists without following links', async () => {
  assert.equal((await scanTree(join(scratch, 'missing'))).size, 0);
  const root = join(scratch, 'size');
  await mkdir(join(root, 'a', 'b'), { recursive: true });
  await writeFile(join(root, 'one'), 'x'.repeat(100));
  await writeFile(join(root, 'a', 'b', 'two'), 'y'.repeat(23));
  await symlink('/', join(root, 'a', 'root-link'));
  assert.equal(await treeSize(root), 123 + '/'.length, 'files and the link itself, nothing it points to');
  assert.deepEqual((await namesIn(root, ['a'])).sort(), ['b', 'root-link']);
  assert.deepEqual(await namesIn(root, ['a', 'root-link']), [], 'a link on the way is not followed');
  assert.deepEqual(await namesIn(root, ['nope']), []);
});

test('scanTree leaves out the skipped paths (a file, or a directory and all under it) and only those', async () => {
  const root = join(scratch, 'skip');
  await mkdir(join(root, 'gocache', 'ab'), { recursive: true });
  await mkdir(join(root, 'gopath', 'gocache'), { recursive: true });
  await writeFile(join(root, 'gocache', 'ab', 'entry'), 'x');
  await writeFile(join(root, 'pyvenv.cfg'), 'home = /usr/bin\n');
  await writeFile(join(root, 'go.mod'), 'module session\n');
  const scanned = await scanTree(root, 'env/', ['gocache', 'pyvenv.cfg']);
  assert.deepEqual([...scanned.keys()], ['env/go.mod', 'env/gopath', 'env/gopath/gocache'], 'the same name deeper down is kept');
});
