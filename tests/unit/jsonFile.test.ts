import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DamagedRecordError, hasFields, parseRecord, readJsonFile, writeJsonAtomically } from '../../src/storage/jsonFile.js';
import { writeThroughThread } from '../../src/storage/fileWriteThread.js';

const isRecord = hasFields({ id: 'string', size: 'number', tags: 'object', on: 'boolean' });

test('hasFields: every named field must be there with its typeof; extra fields are fine', () => {
  assert.equal(isRecord({ id: 'a', size: 1, tags: [], on: false, extra: 1 }), true);
  assert.equal(isRecord({ id: 'a', size: '1', tags: [], on: false }), false);
  assert.equal(isRecord({ id: 'a', size: 1, on: false }), false);
  assert.equal(isRecord({ id: 'a', size: 1, tags: {}, on: 'false' }), false);
  for (const value of [null, undefined, 'a', 1, []]) assert.equal(isRecord(value), false, String(value));
  assert.equal(hasFields({})({}), true);
});

test('hasFields: null is not an object field', () => {
  assert.equal(isRecord({ id: 'a', size: 1, tags: null, on: true }), false);
});

test('parseRecord: the value when it is valid JSON of the right shape, else DamagedRecordError saying which', () => {
  assert.deepEqual(parseRecord('{"id":"a","size":2,"tags":{},"on":true}', isRecord), { id: 'a', size: 2, tags: {}, on: true });
  assert.throws(
    () => parseRecord('{"id":', isRecord),
    (err: unknown) => err instanceof DamagedRecordError && err.message === 'it is not valid JSON',
  );
  assert.throws(() => parseRecord('', isRecord), DamagedRecordError);
  assert.throws(
    () => parseRecord('{"id":"a"}', isRecord),
    (err: unknown) => err instanceof DamagedRecordError && err.message === 'it lacks fields it must have',
  );
});

const dir = await mkdtemp(join(tmpdir(), 'unit-json-'));
after(() => rm(dir, { recursive: true, force: true }));

test('writeJsonAtomically writes the value readable only by the worker and leaves no temporary file', async () => {
  const file = join(dir, 'record.json');
  await writeJsonAtomically(file, { id: 'a', size: 1, tags: ['x'], on: true });
  await writeJsonAtomically(file, { id: 'b', size: 2, tags: [], on: false }, false);
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { id: 'b', size: 2, tags: [], on: false });
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ['record.json']);
});

test('writeJsonAtomically that fails (a value that is not JSON, a rename refused) leaves no temporary file', async () => {
  const own = await mkdtemp(join(dir, 'failing-'));
  await assert.rejects(writeJsonAtomically(join(own, 'big.json'), { n: 1n }), TypeError);
  await mkdir(join(own, 'taken.json'));
  await assert.rejects(writeJsonAtomically(join(own, 'taken.json'), { id: 't' }), { code: 'EISDIR' });
  assert.deepEqual(await readdir(own), ['taken.json']);
});

test('writeJsonAtomically: many writes at once (on the writing thread), each file holding its own last value', async () => {
  const own = await mkdtemp(join(dir, 'many-'));
  const values = Array.from({ length: 40 }, (_, i) => ({ id: `v${i}`, size: i, tags: ['é', '\u0000', '😀'.repeat(i)], on: i % 2 === 0 }));
  await Promise.all(values.map((v, i) => writeJsonAtomically(join(own, `r${i % 10}.json`), v, i % 3 === 0)));
  for (let f = 0; f < 10; f++) assert.deepEqual(JSON.parse(await readFile(join(own, `r${f}.json`), 'utf8')), values[30 + f]);
  assert.equal((await readdir(own)).length, 10);
});

// Found by an attack (a helper session): a worker killed between the temporary's open and its
// rename left it, and a restart with the same pid (a container's pid 1) names writes alike.
test('a temporary a stopped worker left under the name a write uses is written over, not refused', async () => {
  const own = await mkdtemp(join(dir, 'leftover-'));
  const file = join(own, 'session.json');
  const temporary = `${file}.tmp-1-1`;
  await writeFile(temporary, '{"half":');
  await writeThroughThread(file, temporary, '{"whole":true}', false);
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { whole: true });
  assert.deepEqual(await readdir(own), ['session.json']);
});

test('readJsonFile: undefined for no file, the value for a good one, DamagedRecordError for a bad one', async () => {
  assert.equal(await readJsonFile(join(dir, 'missing.json'), isRecord), undefined);
  const good = join(dir, 'good.json');
  await writeJsonAtomically(good, { id: 'g', size: 0, tags: {}, on: true });
  assert.deepEqual(await readJsonFile(good, isRecord), { id: 'g', size: 0, tags: {}, on: true });
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{"id": "g"');
  await assert.rejects(readJsonFile(bad, isRecord), DamagedRecordError);
  // Other failures (here: a directory where the file should be) are not "no file".
  await assert.rejects(readJsonFile(dir, isRecord), (err: unknown) => (err as NodeJS.ErrnoException).code === 'EISDIR');
});
