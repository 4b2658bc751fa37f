import { PhaseClock } from '../telemetry/taskPhases.js';
import { TaskAbort } from '../sessions/taskAbort.js';
import type { TaskRecord } from '../sessions/taskRegistry.js';
import type { TaskEvent } from '../tools/taskEvents.js';
import type { PortLinks, ToolLimits, ToolOutcome } from '../tools/tool.js';
import { EventQueue } from './eventQueue.js';
import type { PayloadBudget } from '../sessions/payloadBudget.js';
import type { PreparedTask } from './prepareTask.js';
import type { CallTurns } from './callTurns.js';
import type { TaskEnding } from './taskOutcome.js';

const NO_EVENTS: AsyncIterable<TaskEvent> = { [Symbol.asyncIterator]: async function* () {} };

/**
 * A registered task's tool, running. A process tool runs under the record's AbortSignal, which
 * CancelTask, the timeout, the client going away and DestroySession abort, and streams its
 * events through a bounded queue; an instant tool runs bare (see tools/tool.ts).
 */
export class ToolRun {
  private ended = false;
  /** Where the task's time goes; the clock starts with the task. */
  readonly phases: PhaseClock;
  private readonly running: Promise<ToolOutcome>;
  private readonly queue: EventQueue<TaskEvent> | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onCallEnd = () => this.record.controller.abort(new TaskAbort('client_gone', 'the client went away'));

  /** Payload bytes this call holds, given back when it ends (stop). */
  private readonly releases: (() => void)[] = [];

  constructor(
    task: PreparedTask,
    private readonly record: TaskRecord,
    private readonly callSignal: AbortSignal,
    limits: ToolLimits,
    private readonly payloads: PayloadBudget,
    private readonly turns: CallTurns,
    private readonly portLinks?: PortLinks,
  ) {
    this.phases = new PhaseClock(task.tool.name);
    if (callSignal.aborted) this.onCallEnd();
    if (task.tool.kind === 'process') {
      callSignal.addEventListener('abort', this.onCallEnd, { once: true });
      this.timer = setTimeout(
        () => record.controller.abort(new TaskAbort('timeout', `exceeded its ${task.timeoutSeconds} s timeout`)),
        task.timeoutSeconds * 1000,
      );
      this.queue = new EventQueue<TaskEvent>();
    }
    this.running = this.run(task, limits);
    this.running.catch(() => undefined); // awaited by ending(); this keeps an early exit from leaving it unhandled
  }

  private async run({ tool, args, session, constraints }: PreparedTask, limits: ToolLimits): Promise<ToolOutcome> {
    try {
      const holdPayload = async (bytes: number) => {
        // The session's share first: a session waiting on its own calls takes nothing of the others'.
        this.releases.push(await session.payloads.acquire(bytes, this.callSignal));
        this.releases.push(await this.payloads.acquire(bytes, this.callSignal));
      };
      if (tool.kind === 'instant') return await tool.run(args, { session, limits, constraints, holdPayload, portLinks: this.portLinks });
      this.releases.push(await this.turns.take(session.id, this.record.controller.signal));
      // A task that starts a process is on disk before its code runs (Session.recordTask). The
      // process is prepared while it is written (RunOptions.recorded).
      const recorded = session.recordTask(this.record);
      const queue = this.queue!;
      try {
        return await tool.run(args, {
          session,
          limits,
          constraints,
          holdPayload,
          portLinks: this.portLinks,
          signal: this.record.controller.signal,
          phases: this.phases,
          recorded,
          emit: (event) => queue.push(event),
          othersBusy: () => this.turns.othersWant(session.id),
        });
      } finally {
        await recorded;
      }
    } finally {
      this.ended = true;
      this.queue?.close();
    }
  }

  /** The tool's progress and log events as they come; ends when the tool does. */
  events(): AsyncIterable<TaskEvent> {
    return this.queue ?? NO_EVENTS;
  }

  /** How the tool ended; a tool's own error is rethrown unless the task was stopped. */
  async ending(): Promise<TaskEnding> {
    try {
      return { outcome: await this.running, abort: this.record.abortReason };
    } catch (err) {
      if (this.record.abortReason === undefined) throw err;
      return { outcome: undefined, abort: this.record.abortReason };
    }
  }

  /** Releases the task's timer and listener; a tool still running (the client left) is stopped and awaited. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.callSignal.removeEventListener('abort', this.onCallEnd);
    if (!this.ended && this.record.abortReason === undefined) this.onCallEnd();
    this.queue?.close();
    await this.running.catch(() => undefined);
    for (const release of this.releases.splice(0).reverse()) release();
  }
}
