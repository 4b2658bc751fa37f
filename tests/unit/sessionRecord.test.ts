import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { DamagedRecordError } from '../../src/storage/jsonFile.js';
import { cutOff, parseSessionRecord, type SessionRecord } from '../../src/sessions/sessionRecord.js';

const record: SessionRecord = {
  version: 1,
  id: 'session-abc',
  workspaceId: 'w',
  userId: 'u',
  config: {
    language: 'python',
    limits: { maxMemoryMb: 0, maxCpuPercent: 0, maxDiskMb: 64, timeoutSeconds: 0 },
    env: { A: '1' },
    network: { mode: 'none', allow: [] },
  },
  createdAtMs: 1,
  lastActivityMs: 2,
  uid: 200001,
  diskMb: 64,
  diskBaselineBytes: 4096,
  lastCheckpointId: '',
  artifacts: ['artifact-x'],
  tasks: [{ taskId: 't1', toolName: 'run.python', status: TaskStatus.STATUS_RUNNING, startTimeMs: 5, endTimeMs: 0 }],
  state: 'READY',
};

test('a session record written is read back as it was', () => {
  assert.deepEqual(parseSessionRecord(JSON.stringify(record), 'session-abc'), record);
});

test('a damaged record, or one naming another session, is refused (the session is then quarantined)', () => {
  assert.throws(() => parseSessionRecord('{"version":1, "id": trunc', 'session-abc'), DamagedRecordError);
  assert.throws(() => parseSessionRecord(JSON.stringify({ ...record, tasks: [{ taskId: 1 }] }), 'session-abc'), DamagedRecordError);
  assert.throws(() => parseSessionRecord(JSON.stringify({ ...record, version: 2 }), 'session-abc'), DamagedRecordError);
  assert.throws(() => parseSessionRecord(JSON.stringify(record), 'session-other'), /names session session-abc/);
  // Its config goes through CreateSession's checks again.
  assert.throws(
    () => parseSessionRecord(JSON.stringify({ ...record, config: { ...record.config, env: { 'A=B': 'x' } } }), 'session-abc'),
    /not a valid environment variable name/,
  );
});

test('a task running when the worker went away is FAILURE from then; finished ones stay as they were', () => {
  const [running] = record.tasks;
  assert.ok(running);
  assert.deepEqual(cutOff(running, 100), { ...running, status: TaskStatus.STATUS_FAILURE, endTimeMs: 100 });
  const done = { ...running, status: TaskStatus.STATUS_SUCCESS, endTimeMs: 9 };
  assert.equal(cutOff(done, 100), done);
});

test('each field of a record is shape-checked: wrong types, unknown states and odd uids are damage', () => {
  const damaged = (change: Record<string, unknown>) =>
    assert.throws(() => parseSessionRecord(JSON.stringify({ ...record, ...change }), 'session-abc'), DamagedRecordError, JSON.stringify(change));
  damaged({ state: 'RUNNING' });
  damaged({ uid: 1.5 });
  damaged({ uid: '200001' });
  damaged({ artifacts: ['a', 2] });
  damaged({ createdAtMs: '1' });
  damaged({ workspaceId: null });
  damaged({ tasks: {} });
  // A record without a uid (the worker's own) is fine.
  const { uid: _uid, ...withoutUid } = record;
  assert.equal(parseSessionRecord(JSON.stringify(withoutUid), 'session-abc').uid, undefined);
  assert.equal(parseSessionRecord(JSON.stringify({ ...record, state: 'TERMINATING' }), 'session-abc').state, 'TERMINATING');
});

test('a task cut off never ends before it started (the clock went back)', () => {
  const [running] = record.tasks;
  assert.equal(cutOff(running!, 1).endTimeMs, running!.startTimeMs);
});

test('a record whose config is not a config is a DamagedRecordError, like any other damage', () => {
  assert.throws(() => parseSessionRecord(JSON.stringify({ ...record, config: null }), 'session-abc'), DamagedRecordError);
  assert.throws(
    () =>
      parseSessionRecord(JSON.stringify({ ...record, config: { ...record.config, limits: { ...record.config.limits, maxMemoryMb: 'lots' } } }), 'session-abc'),
    DamagedRecordError,
  );
});
