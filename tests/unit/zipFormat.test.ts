import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { extractArchive, extractingFiles, openArchive, sha256Of, worthDeflating, writeArchive } from '../../src/storage/checkpointArchive.js';
import { scanTree } from '../../src/storage/fileTree.js';
import { readZipDirectory, readZipEntry, ZipFormatError } from '../../src/storage/zipReader.js';
import { METHOD_STORE, ZipWriter } from '../../src/storage/zipWriter.js';

const scratch = await mkdtemp(join(tmpdir(), 'unit-zip-'));
after(() => rm(scratch, { recursive: true, force: true }));

test('worthDeflating: text and small samples are deflated, random bytes are stored', () => {
  assert.equal(worthDeflating(Buffer.from('def f(x):\n    return x\n'.repeat(500))), true);
  assert.equal(worthDeflating(randomBytes(100_000)), false);
  assert.equal(worthDeflating(randomBytes(100)), true, 'too small to judge');
});

test('large files (streamed in chunks, deflated or stored) and small ones come back byte for byte, and unzip agrees', async () => {
  const source = { workspace: join(scratch, 'src', 'workspace'), env: join(scratch, 'src', 'env') };
  await mkdir(join(source.workspace, 'd'), { recursive: true });
  await mkdir(source.env, { recursive: true });
  const random = randomBytes(9 << 20);
  const text = Buffer.from('line of text\n'.repeat(800_000));
  await writeFile(join(source.workspace, 'random.bin'), random);
  await writeFile(join(source.workspace, 'd', 'text.txt'), text);
  await writeFile(join(source.workspace, 'd', 'small.py'), 'print(1)\n');
  const tree = await scanTree(source.workspace, 'workspace/');
  const file = join(scratch, 'large.zip');
  const written = await writeArchive(file, source, tree, [...tree.keys()], [], { checkpointId: 'c' });
  assert.equal(written.sha256, await sha256Of(file));
  assert.ok(written.size < random.length + text.length / 4, 'random stored, text deflated');

  const target = { workspace: join(scratch, 'dst', 'workspace'), env: join(scratch, 'dst', 'env') };
  await mkdir(target.workspace, { recursive: true });
  await mkdir(target.env, { recursive: true });
  await extractArchive(await openArchive(file), target, { workspace: undefined, env: undefined });
  assert.ok((await readFile(join(target.workspace, 'random.bin'))).equals(random));
  assert.ok((await readFile(join(target.workspace, 'd', 'text.txt'))).equals(text));
  assert.equal(await readFile(join(target.workspace, 'd', 'small.py'), 'utf8'), 'print(1)\n');
  try {
    execFileSync('unzip', ['-tq', file], { stdio: 'pipe' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // no unzip here: nothing to compare with
  }
});

test('an entry whose bytes do not match its CRC is refused', async () => {
  const file = join(scratch, 'crc.zip');
  const out = await open(file, 'w');
  const data = Buffer.from('hello');
  const writer = new ZipWriter(out);
  await writer.add({
    name: 'workspace/a',
    kind: 'file',
    mode: 0o644,
    mtimeMs: Date.now(),
    method: METHOD_STORE,
    crc: crc32(data) ^ 1,
    size: data.length,
    data,
  });
  await writer.finish();
  await out.close();
  const handle = await open(file, 'r');
  try {
    const [entry] = await readZipDirectory(handle.fd, (await handle.stat()).size, { entries: 10, bytes: 1 << 20 });
    assert.equal(entry?.name, 'workspace/a');
    await assert.rejects(readZipEntry(handle.fd, entry), ZipFormatError);
  } finally {
    await handle.close();
  }
});

// Files that fit in memory are extracted on the compression threads, in batches whose
// descriptors the thread closes: many files come back with their bytes and times, and a damaged
// entry among them is a ZipFormatError that leaves no descriptor open.
test('files extracted in batches on the compression threads: bytes and times kept; a damaged one is a ZipFormatError, no descriptor left open', async () => {
  const source = { workspace: join(scratch, 'many', 'workspace'), env: join(scratch, 'many', 'env') };
  await mkdir(source.workspace, { recursive: true });
  await mkdir(source.env, { recursive: true });
  const contents = new Map<string, Buffer>();
  for (let i = 0; i < 300; i++) {
    const bytes = i % 3 === 0 ? randomBytes(i * 37) : Buffer.from(`file ${i}\n`.repeat(i));
    contents.set(`f${i}`, bytes);
    await writeFile(join(source.workspace, `f${i}`), bytes);
    await utimes(join(source.workspace, `f${i}`), 1_000_000 + i, 1_000_000 + i);
  }
  const tree = await scanTree(source.workspace, 'workspace/');
  const file = join(scratch, 'many.zip');
  await writeArchive(file, source, tree, [...tree.keys()], [], { checkpointId: 'c' });
  const fresh = async (name: string) => {
    const target = { workspace: join(scratch, name, 'workspace'), env: join(scratch, name, 'env') };
    await mkdir(target.workspace, { recursive: true });
    await mkdir(target.env, { recursive: true });
    return target;
  };
  const intact = await fresh('many-out');
  await extractArchive(await openArchive(file), intact, { workspace: undefined, env: undefined });
  for (const [name, bytes] of contents) {
    assert.ok((await readFile(join(intact.workspace, name))).equals(bytes), name);
    assert.equal((await stat(join(intact.workspace, name))).mtimeMs, (1_000_000 + Number(name.slice(1))) * 1000, name);
  }

  // One byte of a text entry's data flipped, half way through the archive.
  const handle = await open(file, 'r+');
  const [entry] = (await readZipDirectory(handle.fd, (await handle.stat()).size, { entries: 1000, bytes: 1 << 20 })).filter((e) => e.name === 'workspace/f151');
  const header = Buffer.alloc(30);
  await handle.read(header, 0, 30, entry!.localOffset);
  const data = entry!.localOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, data + 2);
  await handle.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, data + 2);
  await handle.close();
  const descriptors = readdirSync('/proc/self/fd').length;
  await assert.rejects(extractArchive(await openArchive(file), await fresh('many-damaged'), { workspace: undefined, env: undefined }), ZipFormatError);
  assert.equal(readdirSync('/proc/self/fd').length, descriptors, 'every descriptor handed to a thread was closed');
});

// Each batch holds its files open until its thread is done: restores side by side share a bound
// of open files (512), so six restores of 150 files at once cannot take the worker's last
// descriptors (unbounded, they would hold up to 900).
test('restores side by side hold at most 512 files open for extraction between them', async () => {
  const source = { workspace: join(scratch, 'side', 'workspace'), env: join(scratch, 'side', 'env') };
  await mkdir(source.workspace, { recursive: true });
  await mkdir(source.env, { recursive: true });
  for (let i = 0; i < 150; i++) await writeFile(join(source.workspace, `f${i}`), `file ${i}\n`.repeat(50));
  const tree = await scanTree(source.workspace, 'workspace/');
  const file = join(scratch, 'side.zip');
  await writeArchive(file, source, tree, [...tree.keys()], [], { checkpointId: 'c' });
  const targets = await Promise.all(
    Array.from({ length: 6 }, async (_, i) => {
      const target = { workspace: join(scratch, `side-${i}`, 'workspace'), env: join(scratch, `side-${i}`, 'env') };
      await mkdir(target.workspace, { recursive: true });
      await mkdir(target.env, { recursive: true });
      return { target, archive: await openArchive(file) };
    }),
  );
  const descriptors = readdirSync('/proc/self/fd').length;
  extractingFiles.peak = 0;
  await Promise.all(targets.map(({ target, archive }) => extractArchive(archive, target, { workspace: undefined, env: undefined })));
  for (const { target } of targets) assert.equal(readdirSync(target.workspace).length, 150);
  assert.ok(extractingFiles.peak > 150, `the restores ran side by side (${extractingFiles.peak} files open at most)`);
  assert.ok(extractingFiles.peak <= 512, `${extractingFiles.peak} files open at most`);
  assert.equal(readdirSync('/proc/self/fd').length, descriptors, 'every one closed');
});

test('a deletion list past what is read whole (70,000 paths of 130 bytes: 10 MB) reads back whole', async () => {
  const roots = { workspace: join(scratch, 'del', 'workspace'), env: join(scratch, 'del', 'env') };
  await mkdir(roots.workspace, { recursive: true });
  await mkdir(roots.env, { recursive: true });
  const deleted = Array.from({ length: 70_000 }, (_, i) => `workspace/node_modules/${String(i).padStart(6, '0')}/${'x'.repeat(100)}`);
  deleted.push(`workspace/${Buffer.from([0xff, 0xfe]).toString('latin1')}`); // not UTF-8: base64 in the list
  const file = join(scratch, 'deletions.zip');
  await writeArchive(file, roots, new Map(), [], deleted, { checkpointId: 'c' });
  const opened = await openArchive(file);
  assert.deepEqual(opened.deleted, deleted);
});
