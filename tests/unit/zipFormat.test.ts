import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { extractArchive, openArchive, sha256Of, worthDeflating, writeArchive } from '../../src/storage/checkpointArchive.js';
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
