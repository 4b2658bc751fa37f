import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { errors } from '../errors.js';
import type { PersistedTask } from './sessionRecord.js';
import { TaskAbort, type TaskAbortKind } from './taskAbort.js';
import { deferred, type Deferred } from '../deferred.js';

export interface TaskRecord {
  readonly taskId: string;
  readonly toolName: string;
  readonly startTimeMs: number;
  endTimeMs: number;
  status: TaskStatus;
  /** Aborting it stops the task and every process it started (made on first use). */
  readonly controller: AbortController;
  /** Why the task was stopped early, if it was. */
  readonly abortReason: TaskAbort | undefined;
  /** Settles once the task has fully ended (its processes are gone). */
  readonly ended: Promise<void>;
}

/** A running task's record; the `ended` promise is made only when someone waits for it. */
class LiveTask implements TaskRecord {
  readonly startTimeMs = Date.now();
  endTimeMs = 0;
  status = TaskStatus.STATUS_RUNNING;
  private controllerRef: AbortController | undefined;
  private waiting: Deferred<void> | undefined;

  constructor(
    readonly taskId: string,
    readonly toolName: string,
  ) {}

  get controller(): AbortController {
    return (this.controllerRef ??= new AbortController());
  }

  get abortReason(): TaskAbort | undefined {
    const signal = this.controllerRef?.signal;
    return signal?.aborted && signal.reason instanceof TaskAbort ? signal.reason : undefined;
  }

  get ended(): Promise<void> {
    if (this.endTimeMs > 0) return Promise.resolve();
    this.waiting ??= deferred();
    return this.waiting.promise;
  }

  markEnded(): void {
    this.waiting?.resolve();
  }
}

export type CancelOutcome = 'canceled' | 'not_found' | 'already_finished';

/**
 * One session's tasks: those running, and a bounded history of finished ones (oldest dropped
 * first) so GetTaskStatus can still answer for recent tasks.
 */
export class TaskRegistry {
  private readonly running = new Map<string, LiveTask>();
  private readonly finished = new Map<string, TaskRecord>();
  private idleWaiters: Deferred<void> | undefined;
  /** Called after every start and finish, with the task (the session persists its record). */
  onChange: (task: TaskRecord) => void = () => undefined;

  constructor(
    private readonly sessionId: string,
    private readonly historyLimit: number,
  ) {}

  start(taskId: string, toolName: string): TaskRecord {
    if (this.running.has(taskId)) throw errors.taskAlreadyRunning(taskId, this.sessionId);
    const record = new LiveTask(taskId, toolName);
    this.running.set(taskId, record);
    this.onChange(record);
    return record;
  }

  /** Every task known, running or finished, as kept on disk. */
  snapshot(): PersistedTask[] {
    return [...this.finished.values(), ...this.running.values()].map((t) => ({
      taskId: t.taskId,
      toolName: t.toolName,
      status: t.status,
      startTimeMs: t.startTimeMs,
      endTimeMs: t.endTimeMs,
    }));
  }

  /**
   * Tasks of an earlier run of the worker, all finished, oldest first, all kept: what its
   * registry held (sessionRecord.withJournal bounds them as it did). `cutOff`, those it cut off
   * (sessionRecord.cutOff), are the newest and all kept too: running, they did not count against
   * the history, and a client asks after each. The next task to finish trims the history.
   */
  restore(tasks: PersistedTask[], cutOff: PersistedTask[] = []): void {
    for (const task of [...tasks, ...cutOff]) {
      // An id finished and then cut off running again: the cut-off run, the newest, is what it names.
      this.finished.delete(task.taskId);
      this.finished.set(task.taskId, { ...task, controller: new AbortController(), abortReason: undefined, ended: Promise.resolve() });
    }
  }

  finish(record: TaskRecord, status: TaskStatus): void {
    const live = this.running.get(record.taskId);
    if (live !== record) return;
    this.running.delete(record.taskId);
    record.status = status;
    record.endTimeMs = Date.now();
    this.finished.delete(record.taskId); // a reused id moves to the newest place
    this.finished.set(record.taskId, record);
    while (this.finished.size > this.historyLimit) this.finished.delete(this.finished.keys().next().value!);
    live.markEnded();
    if (this.running.size === 0) {
      this.idleWaiters?.resolve();
      this.idleWaiters = undefined;
    }
    this.onChange(record);
  }

  get(taskId: string): TaskRecord | undefined {
    return this.running.get(taskId) ?? this.finished.get(taskId);
  }

  cancel(taskId: string): CancelOutcome {
    const record = this.running.get(taskId);
    if (record) {
      record.controller.abort(new TaskAbort('cancelled', 'cancelled by CancelTask'));
      return 'canceled';
    }
    return this.finished.has(taskId) ? 'already_finished' : 'not_found';
  }

  get activeCount(): number {
    return this.running.size;
  }

  /**
   * Task ids, most recent first: running ones, then finished ones. An id running again is listed
   * once, as running (GetTaskStatus answers for that run; a restart keeps only it).
   */
  recentTaskIds(): string[] {
    const byStart = (a: TaskRecord, b: TaskRecord) => b.startTimeMs - a.startTimeMs;
    const finished = [...this.finished.values()].reverse().filter((r) => !this.running.has(r.taskId));
    return [...[...this.running.values()].sort(byStart), ...finished].map((r) => r.taskId);
  }

  /** Resolves once no task runs (at once when none does). */
  idle(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    this.idleWaiters ??= deferred();
    return this.idleWaiters.promise;
  }

  /** Aborts every running task and waits until each has ended. */
  async abortAll(kind: TaskAbortKind, message: string): Promise<void> {
    const records = [...this.running.values()];
    for (const record of records) record.controller.abort(new TaskAbort(kind, message));
    await Promise.all(records.map((r) => r.ended));
  }
}
