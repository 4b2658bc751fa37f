import { ClientError } from 'nice-grpc';
import type { DeepPartial, TaskExecutionClient, TaskRequest, TaskResult } from '../../gen/codegen/v1/task_execution.js';
import type { WorkerCallOptions } from './createWorkerClient.js';

export interface ToolCallOptions {
  signal?: AbortSignal | undefined;
  onLog?: ((source: string, message: string) => void) | undefined;
}

/**
 * Runs a tool to its end and resolves its outputs; rejects with the worker's ClientError when it
 * refused or ended the call with an error status (the code kept), a result sent before that
 * riding along as the error's `outputs`.
 */
export async function callTool(
  tasks: TaskExecutionClient<WorkerCallOptions>,
  sessionId: string,
  toolName: string,
  args: Record<string, string>,
  options: ToolCallOptions = {},
): Promise<Record<string, string>> {
  const request: DeepPartial<TaskRequest> = { sessionId, toolName, arguments: args };
  let result: TaskResult | undefined;
  try {
    for await (const message of tasks.executeTask(request, { signal: options.signal })) {
      const payload = message.payload;
      if (payload?.$case === 'log') options.onLog?.(payload.value.source, payload.value.message);
      else if (payload?.$case === 'result') result = payload.value;
    }
  } catch (err) {
    if (result && err instanceof ClientError) Object.assign(err, { outputs: result.outputs });
    throw err;
  }
  if (!result) throw new Error(`${toolName}: the task stream ended without a result`);
  return result.outputs;
}

/** The outputs a failed call's result carried, if one came before its error. */
export function outputsOf(err: unknown): Record<string, string> | undefined {
  return (err as { outputs?: Record<string, string> } | null)?.outputs;
}
