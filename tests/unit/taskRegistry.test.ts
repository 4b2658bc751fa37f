import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { WorkerError } from '../../src/errors.js';
import { TaskAbort } from '../../src/sessions/taskAbort.js';
import { TaskRegistry } from '../../src/sessions/taskRegistry.js';

const { STATUS_RUNNING, STATUS_SUCCESS, STATUS_FAILURE, STATUS_CANCELLED } = TaskStatus;

test('a started task is running and known; finished, it keeps its status and an end time', () => {
  const tasks = new TaskRegistry('s', 10);
  const before = Date.now();
  const record = tasks.start('t1', 'echo');
  assert.equal(record.status, STATUS_RUNNING);
  assert.equal(record.endTimeMs, 0);
  assert.ok(record.startTimeMs >= before);
  assert.equal(tasks.activeCount, 1);
  assert.equal(tasks.get('t1'), record);
  tasks.finish(record, STATUS_SUCCESS);
  assert.equal(tasks.activeCount, 0);
  assert.equal(tasks.get('t1')?.status, STATUS_SUCCESS);
  assert.ok(record.endTimeMs >= record.startTimeMs);
  assert.equal(tasks.get('unknown'), undefined);
});

test('an id already running is refused with ALREADY_EXISTS; a finished id may be used again', () => {
  const tasks = new TaskRegistry('session-a', 10);
  const first = tasks.start('t', 'echo');
  assert.throws(
    () => tasks.start('t', 'echo'),
    (err: unknown) => err instanceof WorkerError && err.code === Status.ALREADY_EXISTS && err.details.includes('"t"') && err.details.includes('"session-a"'),
  );
  tasks.finish(first, STATUS_SUCCESS);
  const again = tasks.start('t', 'run.python');
  assert.equal(tasks.get('t'), again, 'the running one answers for the id');
  tasks.finish(again, STATUS_FAILURE);
  assert.equal(tasks.get('t')?.toolName, 'run.python');
});

test('finishing a record that is not the running one (stale, or finished already) changes nothing', () => {
  const tasks = new TaskRegistry('s', 10);
  const first = tasks.start('t', 'echo');
  tasks.finish(first, STATUS_SUCCESS);
  const second = tasks.start('t', 'echo');
  tasks.finish(first, STATUS_FAILURE);
  assert.equal(tasks.get('t'), second);
  assert.equal(second.status, STATUS_RUNNING);
  assert.equal(tasks.activeCount, 1);
});

test('finished tasks are kept up to the history limit, the oldest dropped first; a reused id counts as newest', () => {
  const tasks = new TaskRegistry('s', 3);
  for (const id of ['a', 'b', 'c']) tasks.finish(tasks.start(id, 'echo'), STATUS_SUCCESS);
  tasks.finish(tasks.start('a', 'echo'), STATUS_SUCCESS); // a moves to the newest place
  tasks.finish(tasks.start('d', 'echo'), STATUS_SUCCESS);
  assert.equal(tasks.get('b'), undefined, 'b, now the oldest, is dropped');
  assert.deepEqual(
    tasks.snapshot().map((t) => t.taskId),
    ['c', 'a', 'd'],
  );
  assert.equal(tasks.cancel('b'), 'not_found');
});

test('cancel: a running task is aborted with a TaskAbort; finished and unknown ids say so', () => {
  const tasks = new TaskRegistry('s', 10);
  const running = tasks.start('r', 'run.python');
  tasks.finish(tasks.start('f', 'echo'), STATUS_SUCCESS);
  assert.equal(tasks.cancel('r'), 'canceled');
  assert.equal(running.controller.signal.aborted, true);
  assert.ok(running.abortReason instanceof TaskAbort);
  assert.equal(running.abortReason.kind, 'cancelled');
  assert.equal(tasks.cancel('f'), 'already_finished');
  assert.equal(tasks.cancel('nope'), 'not_found');
  assert.equal(tasks.start('x', 'echo').abortReason, undefined, 'not aborted: no reason');
});

test('abortAll aborts every running task with the given kind and waits until each has finished', async () => {
  const tasks = new TaskRegistry('s', 10);
  const records = ['a', 'b'].map((id) => tasks.start(id, 'run.python'));
  let done = false;
  const all = tasks.abortAll('shutdown', 'the worker is stopping').then(() => (done = true));
  for (const r of records) {
    assert.equal(r.abortReason?.kind, 'shutdown');
    assert.equal(r.abortReason?.message, 'the worker is stopping');
  }
  tasks.finish(records[0]!, STATUS_CANCELLED);
  await tick();
  assert.equal(done, false, 'one task still running');
  tasks.finish(records[1]!, STATUS_CANCELLED);
  await all;
  assert.equal(done, true);
  await tasks.abortAll('shutdown', 'nothing runs'); // resolves at once with nothing running
});

test("a record's `ended` resolves when it finishes (and at once once finished)", async () => {
  const tasks = new TaskRegistry('s', 10);
  const record = tasks.start('t', 'echo');
  let ended = false;
  void record.ended.then(() => (ended = true));
  await tick();
  assert.equal(ended, false);
  tasks.finish(record, STATUS_SUCCESS);
  await tick();
  assert.equal(ended, true);
  await record.ended;
});

test('snapshot lists finished then running tasks as persisted; restore keeps the newest up to the limit', () => {
  const tasks = new TaskRegistry('s', 10);
  tasks.finish(tasks.start('done', 'echo'), STATUS_SUCCESS);
  tasks.start('live', 'run.python');
  const snapshot = tasks.snapshot();
  assert.deepEqual(
    snapshot.map((t) => [t.taskId, t.toolName, t.status]),
    [
      ['done', 'echo', STATUS_SUCCESS],
      ['live', 'run.python', STATUS_RUNNING],
    ],
  );
  assert.deepEqual(Object.keys(snapshot[0]!).sort(), ['endTimeMs', 'startTimeMs', 'status', 'taskId', 'toolName']);

  const restored = new TaskRegistry('s', 2);
  const persisted = ['p1', 'p2', 'p3'].map((taskId, i) => ({ taskId, toolName: 'echo', status: STATUS_FAILURE, startTimeMs: i, endTimeMs: i + 1 }));
  // All kept, past the limit too: what the earlier run held (sessionRecord.withJournal bounds it as that run did).
  restored.restore(persisted);
  assert.equal(restored.get('p3')?.status, STATUS_FAILURE);
  assert.equal(restored.activeCount, 0);
  assert.equal(restored.cancel('p2'), 'already_finished');
  assert.deepEqual(restored.snapshot(), persisted);
  restored.finish(restored.start('next', 'echo'), STATUS_SUCCESS);
  assert.equal(restored.get('p1'), undefined, 'the next task to finish trims the history to its limit');
  assert.deepEqual(restored.recentTaskIds(), ['next', 'p3']);
});

test('restore keeps every task cut off, the newest, past the history limit, and the others it is given', () => {
  const task = (taskId: string, i: number) => ({ taskId, toolName: 'run.python', status: STATUS_FAILURE, startTimeMs: i, endTimeMs: 100 });
  const restored = new TaskRegistry('s', 2);
  restored.restore([task('old1', 0), task('old2', 1)], [task('cut1', 2), task('cut2', 3), task('cut3', 4)]);
  assert.deepEqual(restored.recentTaskIds(), ['cut3', 'cut2', 'cut1', 'old2', 'old1']);
  const some = new TaskRegistry('s', 3);
  some.restore([task('old1', 0), task('old2', 1)], [task('cut1', 2)]);
  assert.deepEqual(some.recentTaskIds(), ['cut1', 'old2', 'old1']);
  // Later tasks take their places as the history's bound has it.
  restored.finish(restored.start('next', 'echo'), STATUS_SUCCESS);
  assert.deepEqual(restored.recentTaskIds(), ['next', 'cut3']);
});

test('recentTaskIds: running tasks newest first, then finished ones newest first', async () => {
  const tasks = new TaskRegistry('s', 10);
  tasks.finish(tasks.start('f1', 'echo'), STATUS_SUCCESS);
  tasks.finish(tasks.start('f2', 'echo'), STATUS_SUCCESS);
  const r1 = tasks.start('r1', 'run.python');
  while (Date.now() <= r1.startTimeMs) await new Promise((r) => setImmediate(r)); // a later start time
  tasks.start('r2', 'run.python');
  assert.deepEqual(tasks.recentTaskIds(), ['r2', 'r1', 'f2', 'f1']);
});

test('recentTaskIds lists an id running again once, as running (as a restart lists it: helper-33)', () => {
  const tasks = new TaskRegistry('s', 10);
  tasks.finish(tasks.start('x', 'echo'), STATUS_SUCCESS);
  tasks.finish(tasks.start('a', 'echo'), STATUS_SUCCESS);
  tasks.start('x', 'run.python');
  assert.deepEqual(tasks.recentTaskIds(), ['x', 'a']);
  assert.equal(tasks.get('x')?.status, STATUS_RUNNING);
});

test('onChange is called after every start and every finish, not on cancel', () => {
  const tasks = new TaskRegistry('s', 10);
  const calls: number[] = [];
  tasks.onChange = () => calls.push(tasks.activeCount);
  const record = tasks.start('t', 'echo');
  tasks.cancel('t');
  tasks.finish(record, STATUS_CANCELLED);
  assert.deepEqual(calls, [1, 0], 'called with the registry already updated');
});
