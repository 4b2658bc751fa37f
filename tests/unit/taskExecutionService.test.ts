import assert from 'node:assert/strict';
import { CallTurns } from '../../src/tasks/callTurns.js';
import { PayloadBudget } from '../../src/sessions/payloadBudget.js';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import type { TaskRequest } from '../../gen/codegen/v1/task_execution.js';
import { WorkerError } from '../../src/errors.js';
import { taskExecutionService } from '../../src/grpc/taskExecutionService.js';
import { fakeTaskSession, fakeTaskSessions } from '../helpers/fakeSessions.js';
import { TaskRegistry } from '../../src/sessions/taskRegistry.js';

// The TaskExecution adapter over a stand-in pool holding one session with a real task registry.
const tasks = new TaskRegistry('session-1', 10);
const session = fakeTaskSession({ tasks });
const pool = fakeTaskSessions([session]);
const service = taskExecutionService({
  pool,
  limits: { maxOutputBytes: 1024, maxMessageBytes: 1 << 20 },
  turns: new CallTurns({ perSession: 1, holdMs: 50, recentMs: 100 }),
  maxTimeoutSeconds: 300,
  payloads: new PayloadBudget(1 << 30),
});
const context = { signal: new AbortController().signal } as Parameters<typeof service.executeTask>[1];
const request = (over: Partial<TaskRequest>): TaskRequest => ({
  taskId: '',
  sessionId: 'session-1',
  toolName: 'echo',
  arguments: {},
  constraints: undefined,
  ...over,
});

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const message of stream) out.push(message);
  return out;
}

const invalid = (pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details);

test('executeTask answers with the task id on every message, making one when the request has none', async () => {
  const given = await collect(service.executeTask(request({ taskId: 'mine', arguments: { message: 'm' } }), context));
  assert.deepEqual(given, [
    { taskId: 'mine', payload: { $case: 'result', value: { status: TaskStatus.STATUS_SUCCESS, outputs: { message: 'm' }, error: '', exitCode: 0 } } },
  ]);
  const made = await collect(service.executeTask(request({ arguments: { message: 'm' } }), context));
  assert.match(String(made[0]!.taskId), /^task-/);
  assert.equal(tasks.get(String(made[0]!.taskId))?.status, TaskStatus.STATUS_SUCCESS);
});

test('executeTask bounds the request: ids, tool name, argument count and argument names', () => {
  assert.throws(() => service.executeTask(request({ taskId: 't'.repeat(129) }), context), invalid(/task_id is 129 characters long/));
  assert.throws(() => service.executeTask(request({ toolName: 'x'.repeat(65) }), context), invalid(/tool_name is 65 characters long; at most 64/));
  const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`a${i}`, '']));
  assert.throws(() => service.executeTask(request({ arguments: many }), context), invalid(/arguments has 33 entries; at most 32/));
  assert.throws(
    () => service.executeTask(request({ arguments: { ['n'.repeat(65)]: '' } }), context),
    invalid(/an argument name is 65 characters long; at most 64/),
  );
});

test('cancelTask reports what happened to the task; getTaskStatus answers for known tasks only', async () => {
  const running = tasks.start('long', 'run.python');
  assert.deepEqual(await service.cancelTask({ sessionId: 'session-1', taskId: 'long' }, context), { cancelled: true, state: 'canceled' });
  assert.equal(running.controller.signal.aborted, true);
  tasks.finish(running, TaskStatus.STATUS_CANCELLED);
  assert.deepEqual(await service.cancelTask({ sessionId: 'session-1', taskId: 'long' }, context), { cancelled: false, state: 'already_finished' });
  assert.deepEqual(await service.cancelTask({ sessionId: 'session-1', taskId: 'never' }, context), { cancelled: false, state: 'not_found' });

  const status = await service.getTaskStatus({ sessionId: 'session-1', taskId: 'long' }, context);
  assert.deepEqual(status, { taskId: 'long', status: TaskStatus.STATUS_CANCELLED, startTimeMs: running.startTimeMs, endTimeMs: running.endTimeMs });
  await assert.rejects(
    service.getTaskStatus({ sessionId: 'session-1', taskId: 'never' }, context),
    (err: unknown) => err instanceof WorkerError && err.code === Status.NOT_FOUND,
  );
  await assert.rejects(
    service.cancelTask({ sessionId: 'session-x', taskId: 'long' }, context),
    (err: unknown) => err instanceof WorkerError && err.code === Status.NOT_FOUND,
  );
});
