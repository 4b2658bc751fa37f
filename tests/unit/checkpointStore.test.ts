import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { isCheckpointId, LocalCheckpointStore, MissingArchiveError, type CheckpointRecord } from '../../src/storage/checkpointStore.js';
import { parseS3Url } from '../../src/storage/s3Location.js';
import { DamagedRecordError } from '../../src/storage/jsonFile.js';

test('checkpoint ids are `checkpoint-` and 8 to 64 URL-safe characters; anything else is unknown', () => {
  for (const id of ['checkpoint-abcdefgh', `checkpoint-${'a'.repeat(64)}`, 'checkpoint-AZaz09_-x']) assert.equal(isCheckpointId(id), true, id);
  for (const id of ['checkpoint-short', `checkpoint-${'a'.repeat(65)}`, 'checkpoint-../../etc', 'session-abcdefgh', 'checkpoint-abcdefgh.zip', ''])
    assert.equal(isCheckpointId(id), false, id);
});

test('parseS3Url: bucket and prefix without surrounding slashes', () => {
  assert.deepEqual(parseS3Url('s3://bucket/a/b/', undefined), { bucket: 'bucket', prefix: 'a/b', endpoint: undefined });
  assert.deepEqual(parseS3Url('s3://bucket', 'http://127.0.0.1:9000'), { bucket: 'bucket', prefix: '', endpoint: 'http://127.0.0.1:9000' });
  assert.deepEqual(parseS3Url('s3://b//deep//', undefined).prefix, 'deep');
});

const dir = await mkdtemp(join(tmpdir(), 'unit-checkpoints-'));
after(() => rm(dir, { recursive: true, force: true }));

const record = (checkpointId: string): CheckpointRecord => ({
  checkpointId,
  sessionId: 's',
  createdAtMs: 1,
  checksumSha256: 'a'.repeat(64),
  installedPackages: [],
  modifiedFiles: ['main.py'],
  workspaceId: 'w',
  userId: 'u',
  config: {},
  parentCheckpointId: '',
  sizeBytes: 3,
  storageUrl: '',
});

test('the local store keeps an archive with its record; list skips damaged records; remove removes both', async () => {
  const store = new LocalCheckpointStore(dir);
  const scratch = await store.scratchDir();
  const archive = join(scratch, 'a.zip');
  await writeFile(archive, 'zip');
  await store.save(record('checkpoint-good0001'), archive);
  assert.deepEqual(await store.record('checkpoint-good0001'), record('checkpoint-good0001'));
  assert.equal(store.urlOf('checkpoint-good0001'), pathToFileURL(join(dir, 'checkpoint-good0001.zip')).href);
  const fetched = await store.fetch('checkpoint-good0001');
  assert.equal(fetched.path, join(dir, 'checkpoint-good0001.zip'));

  await writeFile(join(dir, 'checkpoint-damaged1.json'), '{"checkpointId": 1');
  await assert.rejects(store.record('checkpoint-damaged1'), DamagedRecordError);
  assert.deepEqual(
    (await store.list()).map((r) => r.checkpointId),
    ['checkpoint-good0001'],
  );
  assert.equal(await store.record('checkpoint-missing1'), undefined);
  assert.equal(await store.record('../../etc/passwd'), undefined, 'not an id: not looked up');
  await assert.rejects(store.fetch('checkpoint-missing1'), MissingArchiveError);

  await store.remove('checkpoint-good0001');
  assert.equal(await store.record('checkpoint-good0001'), undefined);
  assert.ok(!(await readdir(dir)).includes('checkpoint-good0001.zip'));
});
