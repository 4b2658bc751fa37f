import type { TaskExecutionServiceImplementation, TaskResponse } from '../../gen/codegen/v1/task_execution.js';
import { errors } from '../errors.js';
import { checkLength, checkRequest, REQUEST_LIMITS } from './checkRequest.js';
import { newTaskId, runTask, type TaskRunnerDeps } from '../tasks/runTask.js';
import type { TaskEvent } from '../tools/taskEvents.js';

function toTaskResponse(taskId: string, event: TaskEvent): TaskResponse {
  switch (event.kind) {
    case 'progress':
      return { taskId, payload: { $case: 'progress', value: { percentComplete: event.percentComplete, stage: event.stage, message: event.message } } };
    case 'log':
      return { taskId, payload: { $case: 'log', value: { timestampMs: event.timestampMs, level: event.level, message: event.message, source: event.source } } };
    case 'result':
      return { taskId, payload: { $case: 'result', value: { status: event.status, outputs: event.outputs, error: event.error, exitCode: event.exitCode } } };
  }
}

/** Tool arguments: a bounded count of short names (values are bounded by the message size and each tool). */
function checkArguments(args: Record<string, string>): void {
  const names = Object.keys(args);
  if (names.length > REQUEST_LIMITS.arguments)
    throw errors.invalidArgument(`arguments has ${names.length} entries; at most ${REQUEST_LIMITS.arguments} are allowed`);
  for (const name of names) checkLength('an argument name', name, REQUEST_LIMITS.argumentNameChars);
}

/** TaskExecution: a thin adapter from the wire to the task runner and each session's registry. */
export function taskExecutionService(deps: TaskRunnerDeps): TaskExecutionServiceImplementation {
  return {
    // Returns the task's own generator (no extra layer per streamed message); its errors are
    // WorkerErrors (ServerErrors) already.
    executeTask(request, context) {
      checkRequest(request, { sessionId: 'id', taskId: 'id', toolName: 'toolName' });
      checkArguments(request.arguments);
      const taskId = request.taskId || newTaskId();
      const input = { taskId, sessionId: request.sessionId, toolName: request.toolName, arguments: request.arguments, constraints: request.constraints };
      return runTask(deps, input, context.signal, (event) => toTaskResponse(taskId, event));
    },

    async cancelTask(request) {
      checkRequest(request, { sessionId: 'id', taskId: 'id' });
      const outcome = deps.pool.get(request.sessionId).tasks.cancel(request.taskId);
      return { cancelled: outcome === 'canceled', state: outcome };
    },

    async getTaskStatus(request) {
      checkRequest(request, { sessionId: 'id', taskId: 'id' });
      const record = deps.pool.get(request.sessionId).tasks.get(request.taskId);
      if (!record) throw errors.taskNotFound(request.taskId, request.sessionId);
      return { taskId: record.taskId, status: record.status, startTimeMs: record.startTimeMs, endTimeMs: record.endTimeMs };
    },
  };
}
