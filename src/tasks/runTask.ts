import { randomBytes } from 'node:crypto';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { asCallError } from '../errors.js';
import type { TaskRecord } from '../sessions/taskRegistry.js';
import { metrics } from '../telemetry/metrics.js';
import type { TaskEvent } from '../tools/taskEvents.js';
import type { PortLinks, ToolLimits } from '../tools/tool.js';
import { prepareTask, type PreparedTask, type TaskInput } from './prepareTask.js';
import { taskOutcome, unfinishedStatus, type TaskConclusion } from './taskOutcome.js';
import { ToolRun } from './toolRun.js';
import type { TaskSessions } from './taskSessions.js';
import type { PayloadBudget } from '../sessions/payloadBudget.js';
import type { CallTurns } from './callTurns.js';

export type { TaskInput } from './prepareTask.js';

export interface TaskRunnerDeps {
  pool: TaskSessions;
  limits: ToolLimits;
  maxTimeoutSeconds: number;
  /** Request and reply bytes all sessions' calls hold at once. */
  payloads: PayloadBudget;
  /** Turns at starting process calls, shared between sessions. */
  turns: CallTurns;
  /** Port URLs (port.url), where the worker hands them out. */
  portLinks?: PortLinks | undefined;
}

/** Task ids the worker makes for requests without one: unguessable, URL-safe. */
export function newTaskId(): string {
  return `task-${randomBytes(12).toString('base64url')}`;
}

/**
 * Runs one task: checks the request, registers the task, runs its tool (ToolRun), and yields its
 * events as they happen (as `encode` makes them), ending with one result (taskOutcome). Request
 * errors are thrown before any result; a timeout or cancellation yields its result and then
 * throws its status.
 */
export async function* runTask<M>(
  deps: TaskRunnerDeps,
  input: TaskInput,
  callSignal: AbortSignal,
  encode: (event: TaskEvent) => M,
): AsyncGenerator<M, void, undefined> {
  const task = prepareTask(deps.pool, deps.maxTimeoutSeconds, input);
  const record = startTask(task);
  const run = new ToolRun(task, record, callSignal, deps.limits, deps.payloads, deps.turns, deps.portLinks);
  let conclusion: TaskConclusion | undefined;
  try {
    for await (const event of run.events()) yield encode(event);
    conclusion = taskOutcome(await run.ending(), task.timeoutSeconds);
    // On disk before the client hears it: a restart right after reports what it was told.
    task.session.recordOutcome(record, conclusion.result.status);
    yield encode(conclusion.result);
    if (conclusion.callError) throw conclusion.callError;
  } catch (err) {
    throw taskCallError(err, task);
  } finally {
    await run.stop();
    finishTask(task, record, conclusion);
    if (task.tool.kind === 'process') run.phases.mark('finish');
  }
}

function startTask(task: PreparedTask): TaskRecord {
  const record = task.session.tasks.start(task.taskId, task.tool.name);
  task.session.touch();
  const logger = task.session.logger;
  if (logger.isDebugEnabled()) logger.debug('task started', { task_id: task.taskId, tool: task.tool.name, timeout_seconds: task.timeoutSeconds });
  return record;
}

/** Errors with a status (and the client's own cancellation) pass; anything else is a logged INTERNAL. */
function taskCallError(err: unknown, task: PreparedTask): unknown {
  return asCallError(err, (ref, error) => task.session.logger.error('unexpected error in a task', { task_id: task.taskId, tool: task.tool.name, ref, error }));
}

/** Records how the task ended, in its session, the metrics and (unless a success) the log. */
function finishTask({ session, tool, taskId }: PreparedTask, record: TaskRecord, conclusion: TaskConclusion | undefined): void {
  const status = conclusion?.result.status ?? unfinishedStatus(record.abortReason);
  session.tasks.finish(record, status);
  // A task the worker's shutdown cancelled is no activity of the session's (nor is the restart).
  if (record.abortReason?.kind !== 'shutdown') session.touch();
  const seconds = (Date.now() - record.startTimeMs) / 1000;
  metrics.tasks.inc({ tool: tool.name, status: TaskStatus[status] ?? String(status) });
  metrics.taskSeconds.observe({ tool: tool.name }, seconds);
  if (conclusion?.killedBy) metrics.killed.inc({ limit: conclusion.killedBy });
  // Successes are the bulk at high rates: debug; anything else an operator wants to see.
  const level = status === TaskStatus.STATUS_SUCCESS ? 'debug' : 'info';
  if (session.logger.isLevelEnabled(level))
    session.logger.log(level, 'task finished', { task_id: taskId, tool: tool.name, status: TaskStatus[status], duration_ms: Math.round(seconds * 1000) });
}
