import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { checkArguments, parseEncoding } from '../../src/tools/arguments.js';
import { TOOLS } from '../../src/tools/index.js';

// What each tool accepts, checked by parse() before anything runs.
const tool = (name: string) => TOOLS.get(name)!;
const invalid = (pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details);

test('the worker offers exactly the documented tools; only run.python and pkg.install stream', () => {
  assert.deepEqual([...TOOLS.keys()], ['echo', 'fs.write', 'fs.read', 'fs.list', 'run.python', 'pkg.install']);
  assert.deepEqual(
    [...TOOLS.values()].filter((t) => t.kind === 'process').map((t) => t.name),
    ['run.python', 'pkg.install'],
  );
});

test('checkArguments: unknown names and missing required ones are refused, naming them', () => {
  assert.deepEqual(checkArguments('t', { a: '1' }, ['a'], ['b']), { a: '1' });
  assert.throws(
    () => checkArguments('t', { a: '1', x: '2', y: '3' }, ['a'], ['b']),
    invalid(/^invalid argument: t does not take 'x', 'y'; it takes 'a', 'b'$/),
  );
  assert.throws(() => checkArguments('t', {}, ['a', 'c']), invalid(/^invalid argument: t requires 'a', 'c'$/));
  assert.doesNotThrow(() => checkArguments('t', { a: '' }, ['a']), 'an empty value is given');
});

test("parseEncoding: utf-8 (also 'utf8' and unset) or base64; anything else refused", () => {
  for (const value of [undefined, '', 'utf-8', 'utf8']) assert.equal(parseEncoding('fs.read', value), 'utf-8');
  assert.equal(parseEncoding('fs.read', 'base64'), 'base64');
  assert.throws(() => parseEncoding('fs.read', 'latin1'), invalid(/fs\.read encoding must be 'utf-8' or 'base64', got 'latin1'/));
});

test('fs.write takes text or strict padded base64, and refuses the workspace root and bad paths', () => {
  assert.deepEqual(tool('fs.write').parse({ path: 'a/b.txt', contents: 'héllo' }), { path: 'a/b.txt', segments: ['a', 'b.txt'], bytes: Buffer.from('héllo') });
  assert.deepEqual(
    (tool('fs.write').parse({ path: 'x.bin', contents: 'AAEC/w==', encoding: 'base64' }) as { bytes: Buffer }).bytes,
    Buffer.from([0, 1, 2, 255]),
  );
  for (const contents of ['AAE', 'AA=C', '====', 'A===', 'AB$C', 'YQ==YQ==']) {
    assert.throws(() => tool('fs.write').parse({ path: 'x', contents, encoding: 'base64' }), invalid(/contents are not valid base64/), contents);
  }
  for (const path of ['', '.', './'])
    assert.throws(() => tool('fs.write').parse({ path, contents: 'x' }), invalid(/names the workspace root, not a file/), path);
  assert.throws(() => tool('fs.write').parse({ path: '../x', contents: 'x' }), invalid(/'\.\.' segments are not allowed/));
  assert.throws(() => tool('fs.write').parse({ path: 'x' }), invalid(/fs\.write requires 'contents'/));
});

test('fs.read and fs.list take a workspace path; fs.list takes the root', () => {
  assert.deepEqual(tool('fs.read').parse({ path: 'd/f', encoding: 'base64' }), { path: 'd/f', segments: ['d', 'f'], encoding: 'base64' });
  assert.deepEqual(tool('fs.list').parse({ path: '' }), { path: '', segments: [] });
  assert.throws(() => tool('fs.read').parse({ path: '/etc/passwd' }), invalid(/absolute paths are not allowed/));
  assert.throws(() => tool('fs.list').parse({ path: 'a', recursive: 'true' }), invalid(/fs\.list does not take 'recursive'/));
});

test('run.python needs code; pkg.install needs requirements and refuses pip options', () => {
  assert.deepEqual(tool('run.python').parse({ code: 'print(1)' }), { code: 'print(1)' });
  assert.throws(() => tool('run.python').parse({}), invalid(/run\.python requires 'code'/));
  assert.deepEqual(tool('pkg.install').parse({ requirements: 'requests\n# c\nnumpy==1.26' }), ['requests', 'numpy==1.26']);
  assert.throws(() => tool('pkg.install').parse({ requirements: '--index-url http://evil' }), invalid(/not pip options/));
});
