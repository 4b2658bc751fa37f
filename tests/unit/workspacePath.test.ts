import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { MAX_NAME_BYTES, MAX_PATH_BYTES, workspaceSegments } from '../../src/storage/workspacePath.js';

const refused = (path: string, pattern: RegExp) =>
  assert.throws(
    () => workspaceSegments(path),
    (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details) && Buffer.byteLength(err.details) <= 1024,
    JSON.stringify(path.slice(0, 40)),
  );

test('a relative path splits into its names; empty and `.` segments are dropped', () => {
  assert.deepEqual(workspaceSegments('main.py'), ['main.py']);
  assert.deepEqual(workspaceSegments('a/b/c.txt'), ['a', 'b', 'c.txt']);
  assert.deepEqual(workspaceSegments('./a//b/./c/'), ['a', 'b', 'c']);
  assert.deepEqual(workspaceSegments('...'), ['...'], 'three dots is a name');
  assert.deepEqual(workspaceSegments('a..b/..c'), ['a..b', '..c']);
  assert.deepEqual(workspaceSegments('back\\slash'), ['back\\slash'], 'a backslash is part of a name on Linux');
});

test('"" and "." name the workspace root', () => {
  assert.deepEqual(workspaceSegments(''), []);
  assert.deepEqual(workspaceSegments('.'), []);
  assert.deepEqual(workspaceSegments('./'), []);
});

test('absolute paths, `..` anywhere and NUL bytes are refused, saying why and quoting the path', () => {
  refused('/etc/passwd', /^invalid path "\/etc\/passwd": absolute paths are not allowed/);
  refused('..', /'\.\.' segments are not allowed/);
  refused('a/../b', /'\.\.' segments are not allowed/);
  refused('a/b/..', /'\.\.' segments are not allowed/);
  refused('a\0b', /contains a NUL byte/);
});

test('paths are bounded in bytes (4096), and each name in them (255)', () => {
  const name = 'n'.repeat(MAX_NAME_BYTES);
  assert.deepEqual(workspaceSegments(`${name}/x`), [name, 'x']);
  refused(`${name}n/x`, /a name in it is longer than 255 bytes/);
  refused('é'.repeat(128), /a name in it is longer than 255 bytes/); // 128 characters, 256 bytes
  const long = Array.from({ length: MAX_PATH_BYTES / 2 }, () => 'a').join('/'); // 4095 bytes
  assert.equal(workspaceSegments(long).length, MAX_PATH_BYTES / 2);
  refused(`${long}/b`, /longer than 4096 bytes/);
  refused('中/'.repeat(1100), /longer than 4096 bytes/); // 2200 characters, 4400 bytes
});
