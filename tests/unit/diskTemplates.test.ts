import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pruneTemplates } from '../../src/sandbox/confine/diskImage.js';

const base = await mkdtemp(join(tmpdir(), 'unit-templates-'));
after(() => rm(base, { recursive: true, force: true }));

test('disk templates beyond the kept number go, least recently used first; nothing else in the directory is touched', async () => {
  // Sizes used in the order 1..10, then 1 again: 2 and 3 are the least recently used.
  for (let mb = 1; mb <= 10; mb++) {
    await writeFile(join(base, `ext4-${mb}mb.img`), '');
    await utimes(join(base, `ext4-${mb}mb.img`), mb, mb);
  }
  await utimes(join(base, 'ext4-1mb.img'), 100, 100);
  await writeFile(join(base, 'ext4-5mb.img.123.abc'), 'a template being made');
  await pruneTemplates(base, 8);
  const left = (await readdir(base)).sort();
  assert.deepEqual(left, [
    'ext4-10mb.img',
    'ext4-1mb.img',
    'ext4-4mb.img',
    'ext4-5mb.img',
    'ext4-5mb.img.123.abc',
    'ext4-6mb.img',
    'ext4-7mb.img',
    'ext4-8mb.img',
    'ext4-9mb.img',
  ]);
  await pruneTemplates(base, 8);
  assert.equal((await readdir(base)).length, 9, 'at the bound, nothing more goes');
});
