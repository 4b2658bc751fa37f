import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLevel, TaskStatus } from '../../gen/codegen/v1/common.js';
import type { TaskExecutionClient, TaskResponse } from '../../gen/codegen/v1/task_execution.js';
import { runTask } from '../../src/client/runTask.js';
import type { WorkerCallOptions } from '../../src/client/createWorkerClient.js';

// The client helper over a stand-in client whose executeTask streams the given messages.
function clientStreaming(messages: TaskResponse[], thenThrow?: Error) {
  const seen: { request: unknown; options: unknown }[] = [];
  const client = {
    executeTask: async function* (request: unknown, options: unknown) {
      seen.push({ request, options });
      yield* messages;
      if (thenThrow) throw thenThrow;
    },
  } as unknown as TaskExecutionClient<WorkerCallOptions>;
  return { client, seen };
}

const progress: TaskResponse = { taskId: 't', payload: { $case: 'progress', value: { percentComplete: 50, stage: 'running', message: 'half' } } };
const log: TaskResponse = {
  taskId: 't',
  payload: { $case: 'log', value: { timestampMs: 1, level: LogLevel.LOG_LEVEL_INFO, message: 'hi', source: 'stdout' } },
};
const result: TaskResponse = {
  taskId: 't',
  payload: { $case: 'result', value: { status: TaskStatus.STATUS_SUCCESS, outputs: { stdout: 'hi\n' }, error: '', exitCode: 0 } },
};

test('runTask resolves with the result, passing progress and logs to the callbacks in order, and call options to the call', async () => {
  const { client, seen } = clientStreaming([progress, log, progress, result]);
  const events: string[] = [];
  const final = await runTask(
    client,
    { sessionId: 's', toolName: 'run.python' },
    { onProgress: (p) => events.push(`progress ${p.percentComplete}`), onLog: (l) => events.push(`log ${l.message}`), deadline: 5000 },
  );
  assert.deepEqual(final, { ...result.payload!.value, ended: 'completed' });
  assert.deepEqual(events, ['progress 50', 'log hi', 'progress 50']);
  assert.deepEqual(seen, [{ request: { sessionId: 's', toolName: 'run.python' }, options: { deadline: 5000 } }], 'callbacks are not passed on as call options');
});

test('a stream without a result is an error; an error status after the result still resolves with the result', async () => {
  await assert.rejects(runTask(clientStreaming([progress, log]).client, {}), /the task stream ended without a result/);
  const failure = new Error('no result and then this');
  await assert.rejects(runTask(clientStreaming([progress], failure).client, {}), failure);
  const timedOut: TaskResponse = {
    taskId: 't',
    payload: {
      $case: 'result',
      value: { status: TaskStatus.STATUS_TIMEOUT, outputs: { stdout: 'partial\n', killed_by: 'timeout' }, error: 'task exceeded its 1 s timeout', exitCode: 0 },
    },
  };
  const final = await runTask(clientStreaming([timedOut], new Error('DEADLINE_EXCEEDED')).client, {});
  assert.equal(final.ended, 'timeout');
  assert.equal(final.outputs.stdout, 'partial\n');
});
