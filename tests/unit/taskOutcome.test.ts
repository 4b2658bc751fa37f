import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { WorkerError } from '../../src/errors.js';
import { TaskAbort } from '../../src/sessions/taskAbort.js';
import { taskOutcome, unfinishedStatus } from '../../src/tasks/taskOutcome.js';

const printed = { ok: false, exitCode: 137, outputs: { stdout: 'partial\n', stderr: '' } };

test('a tool that succeeded is SUCCESS with its outputs, and the call ends OK', () => {
  const c = taskOutcome({ outcome: { ok: true, exitCode: 0, outputs: { message: 'hi' } }, abort: undefined }, 30);
  assert.deepEqual(c.result, { kind: 'result', status: TaskStatus.STATUS_SUCCESS, outputs: { message: 'hi' }, exitCode: 0, error: '' });
  assert.equal(c.callError, undefined);
  assert.equal(c.killedBy, undefined);
});

test('a tool that failed is FAILURE with its error and exit code; its call error, if any, ends the call', () => {
  const callError = new WorkerError(Status.INTERNAL, 'pip failed');
  const c = taskOutcome(
    { outcome: { ok: false, exitCode: 1, outputs: { stderr: 'boom', killed_by: 'memory' }, error: 'python exited with code 1', callError }, abort: undefined },
    30,
  );
  assert.equal(c.result.status, TaskStatus.STATUS_FAILURE);
  assert.equal(c.result.error, 'python exited with code 1');
  assert.equal(c.result.exitCode, 1);
  assert.equal(c.callError, callError);
  assert.equal(c.killedBy, 'memory');
});

test('a timeout wins over the outcome: TIMEOUT keeping the output, killed_by=timeout, the call DEADLINE_EXCEEDED', () => {
  const c = taskOutcome({ outcome: printed, abort: new TaskAbort('timeout', 'exceeded its 2 s timeout') }, 2);
  assert.equal(c.result.status, TaskStatus.STATUS_TIMEOUT);
  assert.deepEqual(c.result.outputs, { stdout: 'partial\n', stderr: '', killed_by: 'timeout' });
  assert.equal(c.result.error, 'task exceeded its 2 s timeout');
  assert.equal(c.result.exitCode, 137);
  assert.equal(c.callError?.code, Status.DEADLINE_EXCEEDED);
  assert.equal(c.killedBy, 'timeout');
});

test('a timed-out tool that threw (no outcome) still gets a TIMEOUT result', () => {
  const c = taskOutcome({ outcome: undefined, abort: new TaskAbort('timeout', 'exceeded its 1 s timeout') }, 1);
  assert.equal(c.result.status, TaskStatus.STATUS_TIMEOUT);
  assert.deepEqual(c.result.outputs, { killed_by: 'timeout' });
  assert.equal(c.result.exitCode, 0);
});

for (const kind of ['cancelled', 'client_gone', 'session_destroyed', 'shutdown'] as const) {
  test(`a task stopped (${kind}) is CANCELLED with its output and why, and the call ends CANCELLED`, () => {
    const c = taskOutcome({ outcome: printed, abort: new TaskAbort(kind, 'cancelled by CancelTask') }, 30);
    assert.equal(c.result.status, TaskStatus.STATUS_CANCELLED);
    assert.deepEqual(c.result.outputs, printed.outputs);
    assert.equal(c.result.error, 'task cancelled by CancelTask');
    assert.equal(c.callError?.code, Status.CANCELLED);
  });
}

test('an ending with neither outcome nor abort is a programming error, not a result', () => {
  assert.throws(() => taskOutcome({ outcome: undefined, abort: undefined }, 30), /neither an outcome nor an abort/);
});

test('a task that ended without a result is TIMEOUT, CANCELLED or FAILURE by why it stopped', () => {
  assert.equal(unfinishedStatus(new TaskAbort('timeout', 'x')), TaskStatus.STATUS_TIMEOUT);
  assert.equal(unfinishedStatus(new TaskAbort('client_gone', 'x')), TaskStatus.STATUS_CANCELLED);
  assert.equal(unfinishedStatus(undefined), TaskStatus.STATUS_FAILURE);
});
