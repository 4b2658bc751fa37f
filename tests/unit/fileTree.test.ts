import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { diffTrees, namesIn, scanTree, treeSize, type Tree, type TreeEntry } from '../../src/storage/fileTree.js';

const file = (over: Partial<TreeEntry> = {}): TreeEntry => ({ type: 'file', size: 10, mtimeMs: 1000, ctimeMs: 1000, ino: 7, mode: 0o644, ...over });
const dir = (over: Partial<TreeEntry> = {}): TreeEntry => ({ type: 'directory', size: 0, mtimeMs: 0, ctimeMs: 0, ino: 8, mode: 0o755, ...over });
const link = (target: string, over: Partial<TreeEntry> = {}): TreeEntry => ({
  type: 'symlink',
  size: 0,
  mtimeMs: 5,
  ctimeMs: 5,
  ino: 9,
  mode: 0o777,
  target,
  ...over,
});
const tree = (entries: Record<string, TreeEntry>): Tree => new Map(Object.entries(entries));

test('identical trees have no changes', () => {
  const t = tree({
    a: file(),
    d: dir(),
    l: link('a'),
  });
  assert.deepEqual(diffTrees(t, new Map(t)), { changed: [], deleted: [], unsure: new Set() });
});

test('added paths are changed; paths gone are deleted', () => {
  const before = tree({ keep: file(), gone: file() });
  const now = tree({ keep: file(), fresh: file() });
  assert.deepEqual(diffTrees(before, now), { changed: ['fresh'], deleted: ['gone'], unsure: new Set() });
  assert.deepEqual(diffTrees(new Map(), now), { changed: ['keep', 'fresh'], deleted: [], unsure: new Set() });
  assert.deepEqual(diffTrees(before, new Map()), { changed: [], deleted: ['keep', 'gone'], unsure: new Set() });
});

test('a change of size, mtime, ctime, inode, mode, type or link target is a change; a racy entry counts as changed', () => {
  const before = tree({
    size: file(),
    mtime: file(),
    ctime: file(),
    inode: file(),
    mode: file(),
    type: file(),
    link: link('x'),
    racy: file({ racy: true }),
    dirTime: dir(),
    dirInode: dir(),
    same: file(),
  });
  const now = tree({
    size: file({ size: 11 }),
    mtime: file({ mtimeMs: 1001 }),
    ctime: file({ ctimeMs: 1001 }),
    inode: file({ ino: 70 }),
    mode: file({ mode: 0o755 }),
    type: dir({ mode: 0o644 }),
    link: link('y'),
    racy: file(),
    dirTime: dir({ mtimeMs: 3 }),
    dirInode: dir({ ino: 80, ctimeMs: 80 }),
    same: file(),
  });
  assert.deepEqual(diffTrees(before, now), {
    changed: ['size', 'mtime', 'ctime', 'inode', 'mode', 'type', 'link', 'racy', 'dirTime'],
    deleted: [],
    unsure: new Set(['ctime', 'racy']),
  });
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
  const f = scanned.get('workspace/sub/f.txt')!;
  assert.deepEqual(
    { type: f.type, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, racy: f.racy },
    { type: 'file', size: 5, mtimeMs: 100_000, mode: 0o600, racy: true },
  );
  assert.ok(f.ino > 0 && f.ctimeMs > 100_000, 'ctime is now, whatever mtime says');
  assert.equal(scanned.get('workspace/sub')?.type, 'directory');
  assert.equal(scanned.get('workspace/out')?.type, 'symlink');
  assert.equal(scanned.get('workspace/out')?.target, '/etc');
  assert.equal(scanned.get('workspace/in')?.target, 'sub/f.txt');
  // Made just now: racy, so a rescan sees all but directories (compared by mtime) as changed; older, only what changed.
  assert.deepEqual(
    diffTrees(scanned, await scanTree(root, 'workspace/')).changed.sort(),
    [...scanned]
      .filter(([, e]) => e.racy && e.type !== 'directory')
      .map(([p]) => p)
      .sort(),
  );
  for (const entry of scanned.values()) delete entry.racy;
  await writeFile(join(root, 'sub', 'f.txt'), 'hello!');
  assert.deepEqual(diffTrees(scanned, await scanTree(root, 'workspace/')), { changed: ['workspace/sub/f.txt'], deleted: [], unsure: new Set() });
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

test("a checkpoint's walk counts links' targets with its paths (against 64 MiB); a restore's does not", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'unit-targets-'));
  try {
    const target = 't'.repeat(4000);
    await Promise.all(Array.from({ length: 100 }, (_, i) => symlink(target, join(dir, `l${String(i).padStart(2, '0')}`))));
    const paths = 100 * 'workspace/l00'.length;
    const counted = { bytes: 0, longAllowed: 0, targetsCounted: true };
    assert.equal((await scanTree(dir, 'workspace/', [], counted)).size, 100);
    assert.equal(counted.bytes, paths + 100 * 4000);
    const restoring = { bytes: 0, longAllowed: 0 };
    await scanTree(dir, 'workspace/', [], restoring);
    assert.equal(restoring.bytes, paths, "a restore's walk takes what was saved before targets counted");
    await assert.rejects(scanTree(dir, 'workspace/', [], { ...counted, bytes: (64 << 20) - 300_000 }), /links' targets, come to more than 64 MiB/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
