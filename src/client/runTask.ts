import { TaskStatus } from '../../gen/codegen/v1/common.js';
import type { DeepPartial, TaskExecutionClient, TaskRequest, TaskResult, LogEntry, ProgressUpdate } from '../../gen/codegen/v1/task_execution.js';
import type { WorkerCallOptions } from './createWorkerClient.js';

export interface RunTaskOptions extends WorkerCallOptions {
  signal?: AbortSignal;
  onProgress?: (progress: ProgressUpdate) => void;
  onLog?: (log: LogEntry) => void;
}

/**
 * How a task ended: it ran to its end (`status` says whether it succeeded), or the worker stopped
 * it at its timeout, or it was cancelled (CancelTask, or the worker shutting down).
 */
export type TaskEnd = 'completed' | 'timeout' | 'cancelled';

/** The task's final TaskResult (its outputs as far as it got), and how it ended. */
export interface RunTaskResult extends TaskResult {
  ended: TaskEnd;
}

function endOf(status: TaskStatus): TaskEnd {
  if (status === TaskStatus.STATUS_TIMEOUT) return 'timeout';
  if (status === TaskStatus.STATUS_CANCELLED) return 'cancelled';
  return 'completed';
}

/**
 * Runs a task to its end and resolves with its final TaskResult and how it ended, passing
 * progress and log events to the callbacks as they arrive.
 *
 * It resolves whenever the worker sent the task's result, including for a task that timed out
 * (`ended: 'timeout'`), was cancelled (`ended: 'cancelled'`) or failed: the worker ends those
 * calls with an error status (DEADLINE_EXCEEDED, CANCELLED, INTERNAL for pkg.install) after the
 * result, and the result, outputs included, is what is returned. It rejects only when no result
 * came: the call itself failed (a ClientError: NOT_FOUND session, INVALID_ARGUMENT,
 * UNAVAILABLE, the client's own `deadline`), or `signal` aborted it (an AbortError).
 */
export async function runTask(
  client: TaskExecutionClient<WorkerCallOptions>,
  request: DeepPartial<TaskRequest>,
  options: RunTaskOptions = {},
): Promise<RunTaskResult> {
  const { onProgress, onLog, ...callOptions } = options;
  let result: TaskResult | undefined;
  try {
    for await (const message of client.executeTask(request, callOptions)) {
      const payload = message.payload;
      if (payload?.$case === 'progress') onProgress?.(payload.value);
      else if (payload?.$case === 'log') onLog?.(payload.value);
      else if (payload?.$case === 'result') result = payload.value;
    }
  } catch (err) {
    if (!result) throw err;
  }
  if (!result) throw new Error('the task stream ended without a result');
  return { ...result, ended: endOf(result.status) };
}
