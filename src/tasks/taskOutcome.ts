import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { errors, type WorkerError } from '../errors.js';
import type { TaskAbort } from '../sessions/taskAbort.js';
import type { TaskEvent } from '../tools/taskEvents.js';
import type { ToolOutcome } from '../tools/tool.js';

export type TaskResultEvent = Extract<TaskEvent, { kind: 'result' }>;

/** How a task's tool ended: with an outcome, or stopped (then maybe without one). */
export interface TaskEnding {
  outcome: ToolOutcome | undefined;
  abort: TaskAbort | undefined;
}

/** What the client is told: the result message, then (when set) the status the call ends with. */
export interface TaskConclusion {
  result: TaskResultEvent;
  callError: WorkerError | undefined;
  /** The limit that ended the task's process (for metrics), when one did. */
  killedBy: string | undefined;
}

/**
 * The result of a task from how its tool ended. A timeout wins over the tool's own outcome and
 * ends the call DEADLINE_EXCEEDED; any other stop is CANCELLED and ends the call CANCELLED; both
 * keep the output the tool had gathered. Otherwise the tool's outcome is SUCCESS or FAILURE.
 */
export function taskOutcome({ outcome, abort }: TaskEnding, timeoutSeconds: number): TaskConclusion {
  const outputs = outcome?.outputs ?? {};
  const exitCode = outcome?.exitCode ?? 0;
  if (abort?.kind === 'timeout') {
    const result: TaskResultEvent = {
      kind: 'result',
      status: TaskStatus.STATUS_TIMEOUT,
      outputs: { ...outputs, killed_by: 'timeout' },
      exitCode,
      error: `task ${abort.message}`,
    };
    return { result, callError: errors.taskTimeout(timeoutSeconds), killedBy: 'timeout' };
  }
  if (abort) {
    const result: TaskResultEvent = { kind: 'result', status: TaskStatus.STATUS_CANCELLED, outputs, exitCode, error: `task ${abort.message}` };
    return { result, callError: errors.taskCancelled(abort.message), killedBy: outputs.killed_by };
  }
  if (!outcome) throw new Error('a task ended with neither an outcome nor an abort');
  const status = outcome.ok ? TaskStatus.STATUS_SUCCESS : TaskStatus.STATUS_FAILURE;
  return { result: { kind: 'result', status, outputs, exitCode, error: outcome.error ?? '' }, callError: outcome.callError, killedBy: outputs.killed_by };
}

/** The status of a task that ended without a result message (an error, or the client leaving). */
export function unfinishedStatus(abort: TaskAbort | undefined): TaskStatus {
  if (abort?.kind === 'timeout') return TaskStatus.STATUS_TIMEOUT;
  return abort ? TaskStatus.STATUS_CANCELLED : TaskStatus.STATUS_FAILURE;
}
