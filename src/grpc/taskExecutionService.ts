import type { TaskExecutionServiceImplementation, TaskResponse } from '../../gen/codegen/v1/task_execution.js';
import { errors } from '../errors.js';
import { newTaskId, runTask, type TaskRunnerDeps } from '../tasks/runTask.js';
import type { TaskEvent } from '../tasks/taskEvents.js';

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

/** TaskExecution: a thin adapter from the wire to the task runner and each session's registry. */
export function taskExecutionService(deps: TaskRunnerDeps): TaskExecutionServiceImplementation {
  return {
    // Returns the task's own generator (no extra layer per streamed message); its errors are
    // WorkerErrors (ServerErrors) already.
    executeTask(request, context) {
      const taskId = request.taskId || newTaskId();
      const input = { taskId, sessionId: request.sessionId, toolName: request.toolName, arguments: request.arguments, constraints: request.constraints };
      return runTask(deps, input, context.signal, (event) => toTaskResponse(taskId, event));
    },

    async cancelTask(request) {
      const outcome = deps.pool.get(request.sessionId).tasks.cancel(request.taskId);
      return { cancelled: outcome === 'canceled', state: outcome };
    },

    async getTaskStatus(request) {
      const record = deps.pool.get(request.sessionId).tasks.get(request.taskId);
      if (!record) throw errors.taskNotFound(request.taskId, request.sessionId);
      return { taskId: record.taskId, status: record.status, startTimeMs: record.startTimeMs, endTimeMs: record.endTimeMs };
    },
  };
}
