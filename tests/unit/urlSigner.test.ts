import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UrlSigner } from '../../src/storage/urlSigner.js';

test('signed fields cannot move into one another: a newline or separator in one field is not a field boundary', () => {
  const signer = new UrlSigner(Buffer.alloc(32, 7));
  const grant = ['PUT', 'artifact-x', 'session-y', '10', '5000000\nx/y', '1700000000000'];
  const resplit = ['PUT', 'artifact-x', 'session-y', '10\n5000000', 'x/y', '1700000000000'];
  assert.notEqual(signer.sign(grant), signer.sign(resplit));
  assert.notEqual(signer.sign(['a', 'b']), signer.sign(['a","b']));
  assert.equal(signer.verify(grant, signer.sign(grant)), true);
  assert.equal(signer.verify(resplit, signer.sign(grant)), false);
  assert.equal(signer.verify(grant, 'not hex'), false);
});

test('a signature verifies only the fields it was made for, and only under the same secret', () => {
  const signer = new UrlSigner(Buffer.alloc(32, 7));
  const fields = ['GET', 'artifact-abc', '1700000000000'];
  const signature = signer.sign(fields);
  assert.match(signature, /^[0-9a-f]{64}$/);
  assert.equal(signer.sign([...fields]), signature, 'deterministic');
  assert.equal(signer.verify(['GET', 'artifact-abc', '1700000000001'], signature), false);
  assert.equal(signer.verify(['PUT', 'artifact-abc', '1700000000000'], signature), false);
  assert.equal(new UrlSigner(Buffer.alloc(32, 8)).verify(fields, signature), false);
  assert.equal(signer.verify(fields, ''), false);
  assert.equal(signer.verify(fields, signature.slice(0, 62)), false);
});

test('a signature with anything appended or changed in case does not verify', () => {
  const signer = new UrlSigner(Buffer.alloc(32, 7));
  const signature = signer.sign(['a']);
  assert.equal(signer.verify(['a'], `${signature}zz`), false);
  assert.equal(signer.verify(['a'], `${signature}0`), false);
  assert.equal(signer.verify(['a'], signature.toUpperCase()), false);
});

test('load: a configured secret is used as given; otherwise one is generated once into the data directory and kept', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'unit-signer-'));
  try {
    const configured = await UrlSigner.load('s3cret', join(dir, 'url-secret'));
    assert.equal(configured.sign(['x']), new UrlSigner(Buffer.from('s3cret')).sign(['x']));

    const first = await UrlSigner.load(undefined, join(dir, 'url-secret'));
    const file = join(dir, 'url-secret');
    assert.equal((await readFile(file)).length, 32);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const again = await UrlSigner.load(undefined, join(dir, 'url-secret'));
    assert.equal(again.sign(['x']), first.sign(['x']), 'the same secret after a restart');

    await writeFile(file, 'short');
    const replaced = await UrlSigner.load(undefined, join(dir, 'url-secret'));
    assert.equal((await readFile(file)).length, 32, 'a secret under 32 bytes is replaced');
    assert.notEqual(replaced.sign(['x']), first.sign(['x']));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
