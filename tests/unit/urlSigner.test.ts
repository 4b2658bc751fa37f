import assert from 'node:assert/strict';
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
