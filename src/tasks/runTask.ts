import { randomBytes } from 'node:crypto';
import { SessionState, TaskStatus } from '../../gen/codegen/v1/common.js';
import { isAbortError } from 'abort-controller-x';
import { errors, newErrorRef, quoted, WorkerError } from '../errors.js';
import { stateName } from '../sessions/session.js';
import type { SessionPool } from '../sessions/sessionPool.js';
import { nonNegative } from '../sessions/sessionConfig.js';
import { TOOLS } from '../tools/index.js';
import type { ToolLimits, ToolOutcome } from '../tools/tool.js';
import { EventQueue } from './eventQueue.js';
import { metrics } from '../telemetry/metrics.js';
import { TaskAbort } from '../sessions/taskAbort.js';

const NEVER_ABORTED = new AbortController().signal;
import type { TaskEvent } from '../tools/taskEvents.js';

export interface TaskRunnerDeps {
  pool: SessionPool;
  limits: ToolLimits;
  maxTimeoutSeconds: number;
}

export interface TaskInput {
  taskId: string;
  sessionId: string;
  toolName: string;
  arguments: Record<string, string>;
  constraints?: { timeoutSeconds: number; maxMemoryMb: number; maxCpuPercent: number } | undefined;
}

/** Task ids the worker makes for requests without one: unguessable, URL-safe. */
export function newTaskId(): string {
  return `task-${randomBytes(12).toString('base64url')}`;
}

/** The smallest positive of the task's, the session's and the worker's timeouts. */
function effectiveTimeoutSeconds(...candidates: number[]): number {
  return Math.min(...candidates.filter((s) => s > 0));
}

const RUNNABLE_STATES = new Set([SessionState.SESSION_STATE_READY, SessionState.SESSION_STATE_ACTIVE]);

/**
 * Runs one task: checks the request, registers the task, runs the tool under an AbortSignal
 * (CancelTask, the timeout, the client going away and DestroySession all abort it), and yields
 * its events as they happen (as `encode` makes them), ending with one result. Request errors are
 * thrown before any result; a timeout or cancellation yields its result and then throws its status.
 */
export async function* runTask<M>(deps: TaskRunnerDeps, input: TaskInput, callSignal: AbortSignal, encode: (event: TaskEvent) => M): AsyncGenerator<M, void, undefined> {
  const session = deps.pool.get(input.sessionId);
  if (!deps.pool.isAccepting) throw errors.shuttingDown();
  if (!RUNNABLE_STATES.has(session.state)) throw errors.invalidSessionState(session.id, stateName(session.state), 'run a task');
  const tool = TOOLS.get(input.toolName);
  if (!tool) throw errors.invalidArgument(`unknown tool ${quoted(input.toolName)}; this worker offers ${[...TOOLS.keys()].join(', ')}`);
  const constraints = input.constraints;
  const timeoutSeconds = effectiveTimeoutSeconds(
    nonNegative('constraints.timeout_seconds', constraints?.timeoutSeconds ?? 0),
    session.config.limits.timeoutSeconds,
    deps.maxTimeoutSeconds,
  );
  nonNegative('constraints.max_memory_mb', constraints?.maxMemoryMb ?? 0);
  nonNegative('constraints.max_cpu_percent', constraints?.maxCpuPercent ?? 0);
  const args = tool.parse(input.arguments);

  const record = session.tasks.start(input.taskId, tool.name);
  // Context passed per line rather than through a child logger: cheaper on this hot path.
  const context = { task_id: input.taskId, tool: tool.name };
  // Tools that start no process (echo, fs.*) finish at disk speed: they get no timer and no
  // client-gone listener, and their record's AbortController is only made if CancelTask asks.
  const instant = !tool.streams;
  const signal = instant ? NEVER_ABORTED : record.controller.signal;
  session.touch();
  // A task that starts a process is on disk before it does: a worker killed meanwhile is
  // followed by one that reports it FAILURE, not unknown.
  if (!instant) await session.persist(false);
  if (session.logger.isDebugEnabled()) session.logger.debug('task started', { ...context, timeout_seconds: timeoutSeconds });

  const abortOnCallEnd = () => record.controller.abort(new TaskAbort('client_gone', 'the client went away'));
  if (callSignal.aborted) abortOnCallEnd();
  if (!instant) callSignal.addEventListener('abort', abortOnCallEnd, { once: true });
  const timer = instant ? undefined : setTimeout(() => record.controller.abort(new TaskAbort('timeout', `exceeded its ${timeoutSeconds} s timeout`)), timeoutSeconds * 1000);

  // Tools that stream hand their events through a bounded queue; the others need none.
  const queue = tool.streams ? new EventQueue<TaskEvent>() : undefined;
  let toolEnded = false;
  const running = (async () => {
    try {
      const narrowed = { maxMemoryMb: constraints?.maxMemoryMb ?? 0, maxCpuPercent: constraints?.maxCpuPercent ?? 0 };
      const emit = queue ? (event: TaskEvent) => queue.push(event) : async () => undefined;
      return await tool.run(args, { session, signal, emit, limits: deps.limits, constraints: narrowed });
    } finally {
      toolEnded = true;
      queue?.close();
    }
  })();
  running.catch(() => undefined); // awaited below; this only keeps an early exit from leaving it unhandled

  let finalStatus: TaskStatus | undefined;
  let killedBy: string | undefined;
  try {
    if (queue) for await (const event of queue) yield encode(event);
    let outcome: ToolOutcome | undefined;
    try {
      outcome = await running;
    } catch (err) {
      if (record.abortReason === undefined) throw err;
    }
    const abortKind = record.abortReason?.kind;
    const outputs = outcome?.outputs ?? {};
    killedBy = abortKind === 'timeout' ? 'timeout' : outputs.killed_by;
    const exitCode = outcome?.exitCode ?? 0;
    if (abortKind === 'timeout') {
      finalStatus = TaskStatus.STATUS_TIMEOUT;
      yield encode({ kind: 'result', status: finalStatus, outputs: { ...outputs, killed_by: 'timeout' }, exitCode, error: `task ${record.abortReason!.message}` });
      throw errors.taskTimeout(timeoutSeconds);
    }
    if (abortKind !== undefined) {
      finalStatus = TaskStatus.STATUS_CANCELLED;
      const why = record.abortReason!.message;
      yield encode({ kind: 'result', status: finalStatus, outputs, exitCode, error: `task ${why}` });
      throw errors.taskCancelled(why);
    }
    finalStatus = outcome!.ok ? TaskStatus.STATUS_SUCCESS : TaskStatus.STATUS_FAILURE;
    yield encode({ kind: 'result', status: finalStatus, outputs, exitCode, error: outcome!.error ?? '' });
    if (outcome!.callError) throw outcome!.callError;
  } catch (err) {
    if (err instanceof WorkerError || isAbortError(err)) throw err;
    const ref = newErrorRef();
    session.logger.error('unexpected error in a task', { ...context, ref, error: (err as Error).stack ?? String(err) });
    throw errors.internal(err, ref);
  } finally {
    clearTimeout(timer);
    callSignal.removeEventListener('abort', abortOnCallEnd);
    // Left early (the client went away mid-stream): stop the tool and wait until it has ended.
    if (!toolEnded && record.abortReason === undefined) abortOnCallEnd();
    queue?.close();
    await running.catch(() => undefined);
    const abortKind = record.abortReason?.kind;
    const status = finalStatus ?? (abortKind === 'timeout' ? TaskStatus.STATUS_TIMEOUT : abortKind ? TaskStatus.STATUS_CANCELLED : TaskStatus.STATUS_FAILURE);
    session.tasks.finish(record, status);
    session.touch();
    metrics.tasks.inc({ tool: tool.name, status: TaskStatus[status] ?? String(status) });
    metrics.taskSeconds.observe({ tool: tool.name }, (Date.now() - record.startTimeMs) / 1000);
    if (killedBy) metrics.killed.inc({ limit: killedBy });
    // Successes are the bulk at high rates: debug; anything else an operator wants to see.
    const level = status === TaskStatus.STATUS_SUCCESS ? 'debug' : 'info';
    if (session.logger.isLevelEnabled(level)) session.logger.log(level, 'task finished', { ...context, status: TaskStatus[status], duration_ms: Date.now() - record.startTimeMs });
  }
}
