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
import { checkPath, extractArchive, openArchive, restoreDirectoryTimes, sha256Of, writeArchive } from '../../src/storage/checkpointArchive.js';
import { ZipFormatError } from '../../src/storage/zipReader.js';
import { scanTree, type Tree } from '../../src/storage/fileTree.js';
import { assertSameTree } from '../helpers/sameTree.js';

const refusedAs = (pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details);

test('checkPath: entries under workspace/ or env/ are kept (a trailing slash dropped)', () => {
  assert.equal(checkPath('workspace/a.py'), 'workspace/a.py');
  assert.equal(checkPath('env/lib/python3.11/site-packages/x.py'), 'env/lib/python3.11/site-packages/x.py');
  assert.equal(checkPath('workspace/dir/'), 'workspace/dir');
  assert.equal(checkPath('workspace/...'), 'workspace/...', 'three dots is a name');
});

test('checkPath: absolute, `..`, `.`, empty segments and NUL would land outside and are refused', () => {
  for (const path of ['/etc/passwd', 'workspace/../etc', 'workspace/a/../../x', 'workspace/./a', 'workspace//a', 'workspace/a\0b', '..']) {
    assert.throws(() => checkPath(path), refusedAs(/would land outside the session/), JSON.stringify(path));
  }
});

test('checkPath: a backslash and bytes that are not UTF-8 are parts of a name', () => {
  for (const path of ['workspace/a\\b.txt', 'workspace/..\\x', 'workspace/caf\xe9.txt', 'workspace/r\xe9sum\xe9/\xff\xfe'])
    assert.equal(checkPath(path), path.replace(/\/$/, ''), JSON.stringify(path));
});

test('checkPath: anything not below workspace/ or env/ is refused', () => {
  for (const path of ['workspace', 'workspace/', 'env', 'other/x', 'workspaces/x', 'Workspace/x', 'checkpoint.json', 'workspace\\..\\x']) {
    assert.throws(() => checkPath(path), refusedAs(/is not under workspace\/ or env\//), path);
  }
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
  await restoreDirectoryTimes([opened], target);
  assertSameTree(await sessionTree(target), tree, 'extracted');
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

test('an archive naming anything outside is refused before anything is extracted', async () => {
  const outside = join(scratch, 'outside.zip');
  await zip(outside, (a) => a.append('x', { name: 'other/x' }));
  await assert.rejects(openArchive(outside), refusedAs(/is not under workspace\/ or env\//));

  const deletesOut = join(scratch, 'deletes-out.zip');
  await zip(deletesOut, (a) => a.append(JSON.stringify(['workspace/../../etc']), { name: 'deleted.json' }));
  await assert.rejects(openArchive(deletesOut), refusedAs(/would land outside the session/));

  const badList = join(scratch, 'bad-list.zip');
  await zip(badList, (a) => a.append('{"not": "a list"}', { name: 'deleted.json' }));
  await assert.rejects(openArchive(badList), refusedAs(/deletion list is malformed/));

  const notZip = join(scratch, 'not.zip');
  await writeFile(notZip, 'PK but not really');
  await assert.rejects(openArchive(notZip), ZipFormatError, 'the caller names the checkpoint (DATA_LOSS)');
});

test('links pointing anywhere are made as links; nothing is written through them, by this archive or a later one', async () => {
  const outside = join(scratch, 'links-outside');
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, 'victim'), 'untouched');
  const first = join(scratch, 'links-first.zip');
  await zip(first, (a) => {
    a.symlink('workspace/out', outside, 0o777);
    a.symlink('workspace/up', '../../../..', 0o777);
    a.symlink('workspace/dir-out', outside, 0o777);
    // Written through the link if extraction followed it.
    a.append('overwritten', { name: 'workspace/out/victim' });
  });
  const second = join(scratch, 'links-second.zip');
  await zip(second, (a) => {
    a.append('overwritten', { name: 'workspace/dir-out/victim' });
    a.append('overwritten', { name: 'workspace/up/victim' });
  });
  const target = await roots('links-target');
  await extractArchive(await openArchive(first), target, { workspace: undefined, env: undefined });
  assert.equal(await readlink(join(target.workspace, 'out')), outside);
  assert.equal(await readlink(join(target.workspace, 'up')), '../../../..');
  assert.equal(await readlink(join(target.workspace, 'dir-out')), outside);
  assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'untouched');
  await assert.rejects(extractArchive(await openArchive(second), target, { workspace: undefined, env: undefined }));
  assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'untouched');
});
