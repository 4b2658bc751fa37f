import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listedPaths } from '../../src/sessions/checkpoints.js';

// modified_files lists paths up to a bound of bytes as they go on the wire (UTF-8, 4 bytes of
// tag and length each): a reply must fit in a message whatever the session named.

test('paths that fit are all listed; past the bound the list stops in order and says it was cut', () => {
  assert.deepEqual(listedPaths(['a', 'b'], 10), { modifiedFiles: ['a', 'b'], modifiedFilesTruncated: false });
  assert.deepEqual(listedPaths(['a', 'b', 'c'], 10), { modifiedFiles: ['a', 'b'], modifiedFilesTruncated: true });
  assert.deepEqual(listedPaths([], 0), { modifiedFiles: [], modifiedFilesTruncated: false });
  // U+FFFD (a byte that is not UTF-8) is three bytes on the wire, not one character.
  assert.deepEqual(listedPaths(['\ufffd\ufffd', 'x'], 10), { modifiedFiles: ['\ufffd\ufffd'], modifiedFilesTruncated: true });
});
