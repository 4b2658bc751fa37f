import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { lastActivity, withJournal, type PersistedTask } from '../../src/sessions/sessionRecord.js';
import { Session, type SessionSandboxParts } from '../../src/sessions/session.js';
import { bookkeepingSession, idleSessionSandbox } from '../helpers/fakeSessions.js';
import type { SessionJournal, WorkspaceStore } from '../../src/storage/workspaceStore.js';

// Task bookkeeping goes to the journal, not the record: every start and end as it happens, in
// the order they come (helper-33: a start journaled late lost a task killed within 200 ms, and
// swapped tasks started in one millisecond). The record is written again only to fold in enough
// lines, or when the journal cannot be written.

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

test('calls write no record: each start and each end is one journal line, as it happens', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { store, records, lines } = fakes();
  const session = readySession(store);
  for (let i = 0; i < 100; i++) {
    const task = session.tasks.start(`t${i}`, 'echo');
    assert.deepEqual([lines.at(-1)!.taskId, lines.at(-1)!.status], [`t${i}`, TaskStatus.STATUS_RUNNING], 'the start, at once');
    session.tasks.finish(task, TaskStatus.STATUS_SUCCESS);
    await elapse(i % 10 === 0 ? 1000 : 50);
  }
  await elapse(10_000);
  assert.equal(records.length, 0, 'no record written for task bookkeeping');
  assert.deepEqual(
    lines.map((l) => [l.taskId, l.status]),
    Array.from({ length: 100 }, (_, i) => [
      [`t${i}`, TaskStatus.STATUS_RUNNING],
      [`t${i}`, TaskStatus.STATUS_SUCCESS],
    ]).flat(),
  );
});

test('a process task is on disk before its code runs: its start line, or the record where that failed', async () => {
  const { store, records, lines, journalFails } = fakes();
  const session = readySession(store);
  const journaled = session.tasks.start('p', 'run.python');
  await session.recordTask(journaled);
  assert.equal(records.length, 0, 'its start line is on disk: no record');
  assert.deepEqual(
    lines.map((l) => l.taskId),
    ['p'],
  );
  journalFails.now = true;
  const unjournaled = session.tasks.start('q', 'run.python');
  await session.recordTask(unjournaled);
  assert.equal(records.length, 1, 'the record, before the code runs');
  assert.ok(JSON.stringify(records[0]).includes('"q"'));
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
  assert.equal(lines.length, written + 40, 'a start and an end each');
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
  assert.equal(records.length, 2, 'a running task whose start could not be journaled is in a record within 200 ms');
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

test("a task's outcome is a journal line before its finish: replayed alone (a kill between the two), it is what the client was told", () => {
  const { store, lines } = fakes();
  const session = readySession(store);
  const task = session.tasks.start('t', 'run.python');
  session.recordOutcome(task, TaskStatus.STATUS_SUCCESS);
  const beforeFinish = withJournal([], lines as PersistedTask[], 10);
  assert.deepEqual(
    beforeFinish.map((t) => [t.taskId, t.status]),
    [['t', TaskStatus.STATUS_SUCCESS]],
  );
  session.tasks.finish(task, TaskStatus.STATUS_SUCCESS);
  assert.deepEqual(
    withJournal([], lines as PersistedTask[], 10).map((t) => [t.taskId, t.status]),
    [['t', TaskStatus.STATUS_SUCCESS]],
  );
});

test("a record written between a task's outcome and its finish lists the outcome, not the task running", async () => {
  const { store, records } = fakes();
  const session = readySession(store);
  const task = session.tasks.start('t', 'run.python');
  session.recordOutcome(task, TaskStatus.STATUS_FAILURE);
  await session.persist(false);
  const listed = (records.at(-1) as { tasks: PersistedTask[] }).tasks;
  assert.deepEqual(
    listed.map((t) => [t.taskId, t.status]),
    [['t', TaskStatus.STATUS_FAILURE]],
  );
  session.tasks.finish(task, TaskStatus.STATUS_FAILURE);
  await session.persist(false);
  assert.deepEqual(
    (records.at(-1) as { tasks: PersistedTask[] }).tasks.map((t) => [t.taskId, t.status]),
    [['t', TaskStatus.STATUS_FAILURE]],
  );
});
