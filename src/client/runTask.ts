import type { TaskExecutionClient, TaskRequest, TaskResult, LogEntry, ProgressUpdate } from '../../gen/codegen/v1/task_execution.js';
import type { WorkerCallOptions } from './createWorkerClient.js';

export interface RunTaskOptions extends WorkerCallOptions {
  signal?: AbortSignal;
  onProgress?: (progress: ProgressUpdate) => void;
  onLog?: (log: LogEntry) => void;
}

/**
 * Runs a task to its end and resolves with its final TaskResult, passing progress and log
 * events to the callbacks as they arrive. A call that ends with an error status rejects with
 * the ClientError (its `code` is the status), after any result the stream carried.
 */
export async function runTask(client: TaskExecutionClient<WorkerCallOptions>, request: Partial<TaskRequest>, options: RunTaskOptions = {}): Promise<TaskResult> {
  const { onProgress, onLog, ...callOptions } = options;
  let result: TaskResult | undefined;
  for await (const message of client.executeTask(request, callOptions)) {
    const payload = message.payload;
    if (payload?.$case === 'progress') onProgress?.(payload.value);
    else if (payload?.$case === 'log') onLog?.(payload.value);
    else if (payload?.$case === 'result') result = payload.value;
  }
  if (!result) throw new Error('the task stream ended without a result');
  return result;
}
