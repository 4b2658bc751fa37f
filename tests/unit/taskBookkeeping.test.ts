import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { lastActivity } from '../../src/sessions/sessionRecord.js';
import { Session, type SessionSandboxParts } from '../../src/sessions/session.js';
import { bookkeepingSession, idleSessionSandbox } from '../helpers/fakeSessions.js';
import type { SessionJournal, WorkspaceStore } from '../../src/storage/workspaceStore.js';

// Task bookkeeping goes to the journal, not the record: every end as it happens, a start before
// its process runs (Session.recordTask) or, for a task that starts none, once it has run 200 ms.
// The record is written again only to fold in enough lines, or when the journal cannot be written.

interface Fakes {
  store: WorkspaceStore;
  records: { journal?: number }[];
  lines: { taskId: string; status: number; endTimeMs: number }[];
  journalFails: { now: boolean };
}

function fakes(): Fakes {
  const records: { journal?: number }[] = [];
  const lines: Fakes['lines'] = [];
  const journalFails = { now: false };
  let generation = 1;
  let inGeneration = 0;
  const journal: SessionJournal = {
    append: (value) => {
      if (journalFails.now) throw new Error('ENOSPC: no space left on device');
      lines.push(value as Fakes['lines'][number]);
      inGeneration++;
    },
    get lines() {
      return inGeneration;
    },
    resumeAt: () => undefined,
    nextGeneration: () => {
      inGeneration = 0;
      return ++generation;
    },
    settled: async () => undefined,
    close: () => undefined,
  };
  const unused = () => Promise.reject(new Error('not used by these tests'));
  const store = {
    writeRecord: async (_id: string, record: { journal?: number }) => void records.push(record),
    taskJournal: () => journal,
    readTaskJournal: async () => [],
    create: unused,
    rename: unused,
    remove: unused,
  } as unknown as WorkspaceStore;
  return { store, records, lines, journalFails };
}

const sandbox = idleSessionSandbox;

function readySession(store: WorkspaceStore): Session<SessionSandboxParts> {
  const session = bookkeepingSession(store);
  session.ready(sandbox);
  return session;
}

/** Lets the timers due within `ms` fire and the writes they start land. */
async function elapse(ms: number): Promise<void> {
  mock.timers.tick(ms);
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('calls that start no process write no record: each end is one journal line', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { store, records, lines } = fakes();
  const session = readySession(store);
  for (let i = 0; i < 100; i++) {
    const task = session.tasks.start(`t${i}`, 'echo');
    session.tasks.finish(task, TaskStatus.STATUS_SUCCESS);
    await elapse(i % 10 === 0 ? 1000 : 50);
  }
  await elapse(10_000);
  assert.equal(records.length, 0, 'no record written for task bookkeeping');
  assert.deepEqual(
    lines.map((l) => [l.taskId, l.status]),
    Array.from({ length: 100 }, (_, i) => [`t${i}`, TaskStatus.STATUS_SUCCESS]),
  );
});

test('a task that starts no process and runs on has its start journaled once, 200 ms after', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { store, lines } = fakes();
  const session = readySession(store);
  const long = session.tasks.start('long', 'fs.write');
  const quick = session.tasks.start('quick', 'echo');
  session.tasks.finish(quick, TaskStatus.STATUS_SUCCESS);
  await elapse(199);
  assert.deepEqual(
    lines.map((l) => l.taskId),
    ['quick'],
  );
  await elapse(1);
  assert.deepEqual(
    lines.map((l) => [l.taskId, l.status, l.endTimeMs]),
    [
      ['quick', TaskStatus.STATUS_SUCCESS, quick.endTimeMs],
      ['long', TaskStatus.STATUS_RUNNING, 0],
    ],
  );
  // Another start: the long task's start is not written again.
  session.tasks.finish(session.tasks.start('next', 'echo'), TaskStatus.STATUS_SUCCESS);
  session.tasks.start('next2', 'echo');
  await elapse(1000);
  assert.deepEqual(
    lines.map((l) => l.taskId),
    ['quick', 'long', 'next', 'next2'],
  );
  session.tasks.finish(long, TaskStatus.STATUS_SUCCESS);
  assert.equal(lines.at(-1)!.taskId, 'long');
});

test('the record is written to fold in the journal once it holds enough lines', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { store, records, lines } = fakes();
  const session = readySession(store);
  let i = 0;
  while (records.length === 0 && i < 10_000) {
    session.tasks.finish(session.tasks.start(`t${i++}`, 'echo'), TaskStatus.STATUS_SUCCESS);
    await elapse(250);
  }
  assert.equal(records.length, 1, `a record written after ${i} calls`);
  assert.ok(i >= 100 && i <= 1000, `folded after ${i} lines: neither every call nor never`);
  assert.equal(records[0]!.journal, 2, 'the record names the generation after the lines it folded in');
  const written = lines.length;
  for (let k = 0; k < 20; k++) session.tasks.finish(session.tasks.start(`u${k}`, 'echo'), TaskStatus.STATUS_SUCCESS);
  await elapse(1000);
  assert.equal(records.length, 1, 'the next lines start a new count');
  assert.equal(lines.length, written + 20);
});

test('a journal that cannot be written: the record is written within 200 ms instead', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { store, records, journalFails } = fakes();
  const session = readySession(store);
  journalFails.now = true;
  const task = session.tasks.start('t', 'echo');
  session.tasks.finish(task, TaskStatus.STATUS_SUCCESS);
  await elapse(200);
  assert.equal(records.length, 1);
  const running = session.tasks.start('r', 'fs.write');
  await elapse(200);
  assert.equal(records.length, 2, 'a running task whose start could not be journaled is in a record');
  assert.ok(JSON.stringify(records[1]).includes('"r"'));
  session.tasks.finish(running, TaskStatus.STATUS_SUCCESS);
});

test('the last activity after a restart is the newest task time of record and journal, never past now', () => {
  const task = (startTimeMs: number, endTimeMs: number) => ({ taskId: 't', toolName: 'echo', status: TaskStatus.STATUS_SUCCESS, startTimeMs, endTimeMs });
  assert.equal(lastActivity(100, [], 1000), 100);
  assert.equal(lastActivity(100, [task(50, 60), task(300, 0), task(200, 250)], 1000), 300);
  assert.equal(lastActivity(100, [task(200, 450)], 1000), 450);
  assert.equal(lastActivity(100, [task(200, 5000)], 1000), 1000, 'a time past now (the clock set back) counts as now');
  assert.equal(lastActivity(2000, [], 1000), 2000, 'the record alone stands');
});
