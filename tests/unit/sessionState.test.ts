import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { SessionState } from '../../gen/codegen/v1/common.js';
import { WorkerError } from '../../src/errors.js';
import { Session, type SessionSandboxParts } from '../../src/sessions/session.js';
import { bookkeepingSession, idleSessionSandbox } from '../helpers/fakeSessions.js';
import type { WorkspaceStore } from '../../src/storage/workspaceStore.js';

/** A store that keeps records in memory: the session's bookkeeping without a disk. */
function memoryStore(): WorkspaceStore & { records: unknown[] } {
  const records: unknown[] = [];
  const unused = () => Promise.reject(new Error('not used by these tests'));
  return {
    records,
    directories: () => {
      throw new Error('not used');
    },
    create: unused,
    rename: unused,
    remove: unused,
    diskUsage: async () => 0,
    names: async () => [],
    quarantine: unused,
    readRecord: async () => undefined,
    writeRecord: async (_id, record) => void records.push(record),
    readExtra: async () => undefined,
    writeExtra: async () => undefined,
    copyExtras: unused,
    taskJournal: () => ({
      append: () => undefined,
      lines: 0,
      resumeAt: () => undefined,
      nextGeneration: () => 1,
      settled: async () => undefined,
      close: () => undefined,
    }),
    readTaskJournal: async () => [],
  };
}

const sandbox = idleSessionSandbox;

function newSession(store = memoryStore()): Session<SessionSandboxParts> {
  return bookkeepingSession(store);
}

function refusedAs(doing: string, from: string) {
  return (err: unknown) => err instanceof WorkerError && err.code === Status.FAILED_PRECONDITION && err.message.includes(from) && err.message.includes(doing);
}

test('a session goes CREATING → READY → CHECKPOINTING → READY → TERMINATING', () => {
  const session = newSession();
  assert.equal(session.state, SessionState.SESSION_STATE_CREATING);
  session.ready(sandbox);
  assert.equal(session.state, SessionState.SESSION_STATE_READY);
  session.beginCheckpoint();
  assert.equal(session.state, SessionState.SESSION_STATE_CHECKPOINTING);
  session.endCheckpoint();
  assert.equal(session.state, SessionState.SESSION_STATE_READY);
  session.beginTermination();
  assert.equal(session.state, SessionState.SESSION_STATE_TERMINATING);
});

test('a running task makes READY read ACTIVE, and a checkpoint is then refused', () => {
  const session = newSession();
  session.ready(sandbox);
  const record = session.tasks.start('task-1', 'run.python');
  assert.equal(session.state, SessionState.SESSION_STATE_ACTIVE);
  assert.throws(() => session.beginCheckpoint(), refusedAs('checkpoint while tasks run', 'ACTIVE'));
  session.tasks.finish(record, 1);
  assert.equal(session.state, SessionState.SESSION_STATE_READY);
});

test('moves out of order are refused with FAILED_PRECONDITION naming the state', () => {
  const session = newSession();
  assert.throws(() => session.beginCheckpoint(), refusedAs('checkpoint', 'CREATING'));
  assert.throws(() => session.beginTermination(), refusedAs('destroy the session', 'CREATING'));
  session.ready(sandbox);
  assert.throws(() => session.ready(sandbox), refusedAs('become ready', 'READY'));
  assert.throws(() => session.fail(), refusedAs('fail', 'READY'));
  session.beginCheckpoint();
  assert.throws(() => session.beginCheckpoint(), refusedAs('checkpoint', 'CHECKPOINTING'));
  session.beginTermination();
  assert.throws(() => session.beginTermination(), refusedAs('destroy the session', 'TERMINATING'));
});

test('a session destroyed while checkpointing stays TERMINATING when the checkpoint ends', () => {
  const session = newSession();
  session.ready(sandbox);
  session.beginCheckpoint();
  session.beginTermination();
  session.endCheckpoint();
  assert.equal(session.state, SessionState.SESSION_STATE_TERMINATING);
});

test('a session that could not be made is FAILED, and nothing else', () => {
  const session = newSession();
  session.fail();
  assert.equal(session.state, SessionState.SESSION_STATE_FAILED);
  assert.throws(() => session.ready(sandbox), refusedAs('become ready', 'FAILED'));
});

test('an artifact is recorded once and the record written before the call returns', async () => {
  const store = memoryStore();
  const session = newSession(store);
  session.ready(sandbox);
  await session.recordArtifact('a-1');
  await session.recordArtifact('a-1');
  assert.deepEqual(session.artifacts, ['a-1']);
  assert.equal(store.records.length, 1);
  assert.deepEqual((store.records[0] as { artifacts: string[] }).artifacts, ['a-1']);
});

test('the record says TERMINATING once a destroy began, so a restart finishes it', async () => {
  const session = newSession();
  session.ready(sandbox);
  assert.equal(session.record().state, 'READY');
  session.beginTermination();
  assert.equal(session.record().state, 'TERMINATING');
});

test('writes asked for while one is on its way join the next: each lands after what it asked to keep, and no older record lands last', async () => {
  const store = memoryStore();
  const landed: (() => void)[] = [];
  store.writeRecord = (_id, record) =>
    new Promise<void>((resolve) =>
      landed.push(() => {
        store.records.push(record);
        resolve();
      }),
    );
  const session = newSession(store);
  session.ready(sandbox);
  const first = session.recordArtifact('a-1');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(landed.length, 1, 'the first write is on its way');
  const done: string[] = [];
  const later = ['a-2', 'a-3', 'a-4'].map((id) => session.recordArtifact(id).then(() => done.push(id)));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(landed.length, 1, 'the others wait for it');
  landed[0]!();
  await first;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(done, [], 'the later ones wait for the write that holds them');
  assert.equal(landed.length, 2, 'the three later ones make one write');
  landed[1]!();
  await Promise.all(later);
  assert.deepEqual(
    store.records.map((r) => (r as { artifacts: string[] }).artifacts),
    [['a-1'], ['a-1', 'a-2', 'a-3', 'a-4']],
  );
});
