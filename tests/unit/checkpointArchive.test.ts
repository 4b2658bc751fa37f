import assert from 'node:assert/strict';
import { ZipArchive } from 'archiver';
import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { checkLink, checkPath, extractArchive, openArchive, sha256Of, writeArchive } from '../../src/storage/checkpointArchive.js';
import { scanTree, type Tree } from '../../src/storage/fileTree.js';

const refusedAs = (pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details);

test('checkPath: entries under workspace/ or env/ are kept (a trailing slash dropped)', () => {
  assert.equal(checkPath('workspace/a.py'), 'workspace/a.py');
  assert.equal(checkPath('env/lib/python3.11/site-packages/x.py'), 'env/lib/python3.11/site-packages/x.py');
  assert.equal(checkPath('workspace/dir/'), 'workspace/dir');
  assert.equal(checkPath('workspace/...'), 'workspace/...', 'three dots is a name');
});

test('checkPath: absolute, `..`, `.`, empty segments, backslashes and NUL would land outside and are refused', () => {
  for (const path of ['/etc/passwd', 'workspace/../etc', 'workspace/a/../../x', 'workspace/./a', 'workspace//a', 'workspace\\..\\x', 'workspace/a\0b', '..']) {
    assert.throws(() => checkPath(path), refusedAs(/would land outside the session/), JSON.stringify(path));
  }
});

test('checkPath: anything not below workspace/ or env/ is refused', () => {
  for (const path of ['workspace', 'workspace/', 'env', 'other/x', 'workspaces/x', 'Workspace/x', 'checkpoint.json']) {
    assert.throws(() => checkPath(path), refusedAs(/is not under workspace\/ or env\//), path);
  }
});

test('checkLink: relative targets that stay in their own tree pass', () => {
  checkLink('workspace/link', 'a.py');
  checkLink('workspace/a/b/link', '../../c');
  checkLink('workspace/a/link', '..');
  checkLink('env/bin/python3', 'python');
  checkLink('workspace/link', '.');
});

test('checkLink: absolute targets, NULs and targets leaving the tree (even into the other one) are refused', () => {
  for (const [path, target] of [
    ['workspace/l', '/etc/passwd'],
    ['workspace/l', '/workspace/a'],
    ['workspace/l', '..'],
    ['workspace/a/l', '../../..'],
    ['workspace/l', '../env/bin/python'],
    ['env/l', '../workspace/x'],
    ['workspace/l', 'a\0b'],
  ] as const) {
    assert.throws(() => checkLink(path, target), refusedAs(/points outside the session/), `${path} -> ${target}`);
  }
});

test('checkLink: a link whose target goes through another link of the archive cannot reach outside', () => {
  checkLink('workspace/up', '.');
  assert.throws(() => checkLink('workspace/x', 'up/..'), refusedAs(/points outside the session/));
  // `..` after a name is refused wherever it leads: the name may be a link. Leading `..` climbs real directories.
  for (const target of ['a/../b', 'a/./..', 'a//../..'])
    assert.throws(() => checkLink('workspace/d/x', target), refusedAs(/points outside the session/), target);
  checkLink('workspace/d/x', './../b/./c');
  checkLink('env/lib64', 'lib');
});

const scratch = await mkdtemp(join(tmpdir(), 'unit-archive-'));
after(() => rm(scratch, { recursive: true, force: true }));

async function roots(name: string) {
  const r = { workspace: join(scratch, name, 'workspace'), env: join(scratch, name, 'env') };
  await mkdir(r.workspace, { recursive: true });
  await mkdir(r.env, { recursive: true });
  return r;
}

async function sessionTree(r: { workspace: string; env: string }): Promise<Tree> {
  return new Map([...(await scanTree(r.workspace, 'workspace/')), ...(await scanTree(r.env, 'env/'))]);
}

/** A tree without mtimes (extraction does not keep them), for comparing. */
const shape = (tree: Tree) => [...tree].map(([path, { mtimeMs: _mtime, ...rest }]) => [path, rest]).sort();

test('an archive written from a tree extracts to the same tree (files, modes, directories, links) and applies its deletions', async () => {
  const source = await roots('source');
  await mkdir(join(source.workspace, 'pkg'));
  await writeFile(join(source.workspace, 'pkg', 'main.py'), 'print(1)\n');
  await writeFile(join(source.workspace, 'run.sh'), '#!/bin/sh\n');
  await chmod(join(source.workspace, 'run.sh'), 0o750);
  await writeFile(join(source.workspace, 'empty'), '');
  await symlink('pkg/main.py', join(source.workspace, 'link'));
  await mkdir(join(source.env, 'lib'));
  await writeFile(join(source.env, 'lib', 'mod.py'), 'x = 1\n');
  const tree = await sessionTree(source);

  const file = join(scratch, 'full.zip');
  const written = await writeArchive(file, source, tree, [...tree.keys()], ['workspace/stale.txt'], { checkpointId: 'c' });
  assert.equal(written.sha256, await sha256Of(file));
  assert.equal(written.size, (await lstat(file)).size);
  assert.equal((await lstat(file)).mode & 0o777, 0o600);

  const target = await roots('target');
  await writeFile(join(target.workspace, 'stale.txt'), 'old');
  const opened = await openArchive(file);
  assert.deepEqual(opened.deleted, ['workspace/stale.txt']);
  await extractArchive(opened, target, { workspace: undefined, env: undefined });
  assert.deepEqual(shape(await sessionTree(target)), shape(tree));
  assert.equal(await readFile(join(target.workspace, 'pkg', 'main.py'), 'utf8'), 'print(1)\n');
  assert.equal(await readlink(join(target.workspace, 'link')), 'pkg/main.py');
});

async function zip(file: string, build: (archive: ZipArchive) => void): Promise<void> {
  const archive = new ZipArchive();
  const written = pipeline(archive, createWriteStream(file));
  build(archive);
  await archive.finalize();
  await written;
}

test('an archive naming anything outside, or linking out, is refused before anything is extracted', async () => {
  const outside = join(scratch, 'outside.zip');
  await zip(outside, (a) => a.append('x', { name: 'other/x' }));
  await assert.rejects(openArchive(outside), refusedAs(/is not under workspace\/ or env\//));

  const linkOut = join(scratch, 'link-out.zip');
  await zip(linkOut, (a) => {
    a.append('fine', { name: 'workspace/fine.txt' });
    a.symlink('workspace/passwd', '../../../../etc/passwd', 0o777);
  });
  await assert.rejects(openArchive(linkOut), refusedAs(/symlink "workspace\/passwd" points outside the session/));

  const deletesOut = join(scratch, 'deletes-out.zip');
  await zip(deletesOut, (a) => a.append(JSON.stringify(['workspace/../../etc']), { name: 'deleted.json' }));
  await assert.rejects(openArchive(deletesOut), refusedAs(/would land outside the session/));

  const badList = join(scratch, 'bad-list.zip');
  await zip(badList, (a) => a.append('{"not": "a list"}', { name: 'deleted.json' }));
  await assert.rejects(openArchive(badList), refusedAs(/deletion list is malformed/));

  const notZip = join(scratch, 'not.zip');
  await writeFile(notZip, 'PK but not really');
  await assert.rejects(openArchive(notZip), refusedAs(/cannot be read as a zip/));
});
