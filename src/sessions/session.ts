import { SessionState, TaskStatus } from '../../gen/codegen/v1/common.js';
import { PayloadBudget } from './payloadBudget.js';
import { errors, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SessionSandbox } from '../sandbox/session/sessionSandbox.js';
import type { SessionJournal, WorkspaceStore } from '../storage/workspaceStore.js';
import type { RememberedCheckpoint } from './rememberedTree.js';
import { SessionTrees } from './sessionTrees.js';
import { TaskRegistry, type TaskRecord } from './taskRegistry.js';
import type { TreeMemory } from './treeMemory.js';
import { WriteGate } from './writeGate.js';
import type { EffectiveSessionConfig } from './sessionConfig.js';
import type { PersistedTask, SessionRecord } from './sessionRecord.js';

export interface SessionUsage {
  memoryBytes: number;
  cpuPercent: number;
  diskBytes: number;
}

/**
 * A session's life. ACTIVE is not a state of its own: it is READY with a task running.
 *
 *     CREATING ──ready()──▶ READY ──beginCheckpoint()──▶ CHECKPOINTING
 *        │                    ▲ ◀──────endCheckpoint()────────┘
 *        └──fail()──▶ FAILED  └─ beginTermination() from READY or CHECKPOINTING ──▶ TERMINATING
 *
 * Each arrow is a method here and the only way the state changes; any other move is refused.
 * A checkpoint needs READY with no task running; tasks run in READY/ACTIVE (tasks/prepareTask).
 */
type SettledState =
  | SessionState.SESSION_STATE_CREATING
  | SessionState.SESSION_STATE_READY
  | SessionState.SESSION_STATE_CHECKPOINTING
  | SessionState.SESSION_STATE_TERMINATING
  | SessionState.SESSION_STATE_FAILED;

const {
  SESSION_STATE_CREATING: CREATING,
  SESSION_STATE_READY: READY,
  SESSION_STATE_CHECKPOINTING: CHECKPOINTING,
  SESSION_STATE_TERMINATING: TERMINATING,
  SESSION_STATE_FAILED: FAILED,
} = SessionState;

export interface SessionOptions {
  id: string;
  workspaceId: string;
  userId: string;
  config: EffectiveSessionConfig;
  logger: Logger;
  taskHistory: number;
  store: WorkspaceStore;
  /** The worker's heap for file trees (sessionTrees.ts). */
  treeMemory: TreeMemory;
  /** Set when the session is adopted from an earlier run of the worker. */
  createdAtMs?: number;
  lastActivityMs?: number;
}

/** How long task bookkeeping may wait before it is written (a burst of tasks is one write). */
const PERSIST_DELAY_MS = 200;
/**
 * Journal lines after which the record is written again (folding them in): the journal, read at
 * every start, stays small, and the record (a rename that starts ext4's writeback, a millisecond
 * of the file thread) is written once per this many task changes, not after every call.
 */
const JOURNAL_LINES_PER_RECORD = 256;
/** One session's share of the worker's payload bytes: a session cannot take them all. */
const SESSION_PAYLOAD_BYTES = 64 * 1024 * 1024;

/**
 * One session: identity, configuration, state, its tasks, and the sandbox its code runs in.
 * Everything that must outlive the worker process is written to its record (sessionRecord.ts)
 * when it changes: at once for what a client was told (created, checkpointed, recorded). Task
 * bookkeeping goes to the task journal: every start and end as it happens (the whole record
 * within PERSIST_DELAY_MS where a line cannot be written); the last activity is the newest of
 * those times.
 */
/** What a session itself uses of its sandbox: SessionSandbox is one; the state tests give a small fake. */
export type SessionSandboxParts = Pick<SessionSandbox, 'owner' | 'diskUid' | 'diskMb' | 'diskBaselineBytes' | 'usage' | 'diskUsedBytes' | 'dispose'>;

export class Session<S extends SessionSandboxParts = SessionSandbox> {
  readonly id: string;
  readonly workspaceId: string;
  readonly userId: string;
  readonly config: EffectiveSessionConfig;
  readonly logger: Logger;
  readonly createdAtMs: number;
  lastActivityMs: number;
  readonly tasks: TaskRegistry;
  /** Bytes of this session's fs requests and replies held at once (sessions/payloadBudget.ts). */
  readonly payloads = new PayloadBudget(SESSION_PAYLOAD_BYTES);
  /** The worker's writes into the session's files against copies of its disk (forks). */
  readonly writes = new WriteGate();
  private settled: SettledState = CREATING;
  private readonly artifactIds: string[] = [];
  /** Its last checkpoint's tree and its baseline: what its next checkpoint is measured against. */
  readonly trees: SessionTrees;
  private sandboxRef: S | undefined;
  private readonly store: WorkspaceStore;
  private persistTimer: NodeJS.Timeout | undefined;
  /** Running tasks whose start is in the journal. */
  private readonly journaledStarts = new WeakSet<TaskRecord>();
  /**
   * How running tasks ended, by id, as their clients are told before the registry's finish: a
   * record written between lists them so. `journaled`: its line is on disk, so the finish's
   * (the same) is not written again.
   */
  private readonly outcomes = new Map<string, { task: PersistedTask; journaled: boolean }>();
  /** Background processes started so far (SessionRecord.processesStarted). */
  private processesStarted = 0;
  private writing: Promise<void> = Promise.resolve();
  /** Task changes since the record was written (storage/taskJournal.ts). */
  private readonly journal: SessionJournal;
  /** The write that has not started yet, if one waits. */
  private queuedWrite: { durable: boolean; done: Promise<void> } | undefined;

  constructor(options: SessionOptions) {
    this.id = options.id;
    this.workspaceId = options.workspaceId;
    this.userId = options.userId;
    this.config = options.config;
    this.logger = options.logger;
    this.store = options.store;
    this.trees = new SessionTrees(options.store, options.id, options.treeMemory);
    this.createdAtMs = options.createdAtMs ?? Date.now();
    this.lastActivityMs = options.lastActivityMs ?? this.createdAtMs;
    this.tasks = new TaskRegistry(this.id, options.taskHistory);
    // Each start and end on disk as it happens: a restart right after reports a task running
    // then cut off (FAILURE), one ended as it ended, and starts in the order they came.
    this.tasks.onChange = (task) => {
      const told = task.endTimeMs > 0 ? this.outcomes.get(task.taskId) : undefined;
      if (told) this.outcomes.delete(task.taskId);
      if (told?.journaled && told.task.status === task.status) return;
      if (!this.journalTask(task)) this.schedulePersist();
    };
    this.journal = options.store.taskJournal(options.id);
  }

  get state(): SessionState {
    if (this.settled === READY && this.tasks.activeCount > 0) return SessionState.SESSION_STATE_ACTIVE;
    return this.settled;
  }

  get artifacts(): readonly string[] {
    return this.artifactIds;
  }

  get lastCheckpointId(): string {
    return this.trees.lastCheckpointId;
  }

  private move(from: readonly SettledState[], to: SettledState, doing: string): void {
    if (!from.includes(this.settled)) throw errors.invalidSessionState(this.id, stateName(this.state), doing);
    this.settled = to;
  }

  get sandbox(): S {
    if (!this.sandboxRef) throw new Error(`session ${this.id} has no sandbox yet`);
    return this.sandboxRef;
  }

  /** CREATING → READY: the session's sandbox is made (or, adopted, made again). */
  ready(sandbox: S): void {
    this.move([CREATING], READY, 'become ready');
    this.sandboxRef = sandbox;
  }

  /** CREATING → FAILED: the sandbox could not be made; the session is about to be dropped. */
  fail(): void {
    this.move([CREATING], FAILED, 'fail');
  }

  /** READY (no task running) → CHECKPOINTING. */
  beginCheckpoint(): void {
    if (this.state === SessionState.SESSION_STATE_ACTIVE) throw errors.invalidSessionState(this.id, stateName(this.state), 'checkpoint while tasks run');
    this.move([READY], CHECKPOINTING, 'checkpoint');
  }

  /** CHECKPOINTING → READY; a session being destroyed meanwhile stays TERMINATING. */
  endCheckpoint(): void {
    if (this.settled === CHECKPOINTING) this.settled = READY;
  }

  /** READY or CHECKPOINTING → TERMINATING: the first step of destroying it; a second destroy is refused. */
  beginTermination(): void {
    this.move([READY, CHECKPOINTING], TERMINATING, 'destroy the session');
  }

  /**
   * What a record of an earlier run says of the session beyond its identity: tasks (`cutOff`:
   * those it cut off, TaskRegistry.restore), artifacts, checkpoints.
   */
  resume(record: SessionRecord, tasks: PersistedTask[], cutOff: PersistedTask[] = []): void {
    this.journal.resumeAt(record.journal ?? 0);
    this.tasks.restore(tasks, cutOff);
    this.processesStarted = record.processesStarted ?? 0;
    this.artifactIds.push(...record.artifacts);
    this.trees.adopt(record.lastCheckpointId);
  }

  /**
   * A fork's history: its source's checkpoint (the parent of the fork's next incremental one, its
   * tree written beside the fork's record too) and baseline, as they were at the fork.
   */
  async inherit(source: Session<SessionSandboxParts>): Promise<void> {
    await this.trees.inherit(source.trees);
  }

  /**
   * The number of the next background process (its id p<number>), on disk before it is used: an
   * id a client kept from before a restart never names another process.
   */
  async nextProcessNumber(): Promise<number> {
    const number = ++this.processesStarted;
    await this.persist();
    return number;
  }

  /** An artifact recorded for the session (kept once, on disk before the client hears of it). */
  async recordArtifact(artifactId: string): Promise<void> {
    if (this.artifactIds.includes(artifactId)) return;
    this.artifactIds.push(artifactId);
    await this.persist();
  }

  /**
   * Ends every process of the session and releases its sandbox (its files stay). `kept`: for
   * the next start to adopt (shutdown), so its disk is synced first.
   */
  async disposeSandbox(kept = false): Promise<void> {
    clearTimeout(this.persistTimer);
    this.journal.close();
    await this.sandboxRef?.dispose(kept);
  }

  /** A task started or ended now (after a restart, the journal's task times say so: sessionRecord.lastActivity). */
  touch(): void {
    this.lastActivityMs = Date.now();
  }

  async usage(): Promise<SessionUsage> {
    const [processes, diskBytes] = await Promise.all([this.sandboxRef?.usage() ?? { memoryBytes: 0, cpuPercent: 0 }, this.diskBytes()]);
    return { ...processes, diskBytes };
  }

  /** A session with its own disk says what it holds; another is measured (a bounded walk). */
  private async diskBytes(): Promise<number> {
    const own = await this.sandboxRef?.diskUsedBytes().catch(() => undefined);
    return own ?? this.store.diskUsage(this.id).catch(() => 0);
  }

  /** A checkpoint made or restored: remembered, on disk too, as the parent of the next incremental one. */
  async rememberCheckpoint(checkpoint: RememberedCheckpoint): Promise<void> {
    try {
      await this.trees.rememberCheckpoint(checkpoint);
    } finally {
      await this.persist();
    }
  }

  /** What is kept on disk of the session. */
  record(): SessionRecord {
    return {
      version: 1,
      id: this.id,
      workspaceId: this.workspaceId,
      userId: this.userId,
      config: this.config,
      createdAtMs: this.createdAtMs,
      lastActivityMs: this.lastActivityMs,
      uid: this.sandboxRef?.owner?.uid,
      diskUid: this.sandboxRef?.diskUid,
      diskMb: this.sandboxRef?.diskMb ?? 0,
      diskBaselineBytes: this.sandboxRef?.diskBaselineBytes ?? 0,
      lastCheckpointId: this.lastCheckpointId,
      artifacts: [...this.artifactIds],
      tasks: this.tasks.snapshot().map((t) => (t.status === TaskStatus.STATUS_RUNNING ? (this.outcomes.get(t.taskId)?.task ?? t) : t)),
      processesStarted: this.processesStarted,
      state: this.settled === TERMINATING ? 'TERMINATING' : 'READY',
    };
  }

  /**
   * Writes the record now. `durable` (fsynced) where a client has been told something that must
   * hold even if the host goes down; atomic only (it survives the worker, not the host) where
   * speed matters more, as before a task starts a process.
   */
  async persist(durable = true): Promise<void> {
    clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    await this.write(durable);
  }

  /**
   * Puts `task` on disk as it is now, before the code of the process it starts runs: a worker
   * killed meanwhile is followed by one that reports it FAILURE, not unknown. Its start's line is
   * in the task journal already (appended as it started); where it could not be written, the
   * record is written now.
   */
  async recordTask(task: TaskRecord): Promise<void> {
    if (!this.journaledStarts.has(task)) await this.persist(false);
  }

  /**
   * Puts how `task` ended on disk before its result is sent: a worker killed between the two is
   * followed by one that reports what the client was told, not a task cut off. The registry's
   * finish follows once the task's run is wound up (journaled only where this line was not).
   * Where the line cannot be written, the record (which lists the outcome) is, within
   * PERSIST_DELAY_MS.
   */
  recordOutcome(task: TaskRecord, status: TaskStatus): void {
    const { taskId, toolName, startTimeMs } = task;
    const outcome = { taskId, toolName, status, startTimeMs, endTimeMs: Math.max(Date.now(), startTimeMs) };
    const journaled = this.appendLine(outcome);
    this.outcomes.set(taskId, { task: outcome, journaled });
    if (!journaled) this.schedulePersist();
  }

  /** Appends `task` as it is now to the task journal; false (logged) if that could not be written. */
  private journalTask(task: TaskRecord): boolean {
    const { taskId, toolName, status, startTimeMs, endTimeMs } = task;
    if (!this.appendLine({ taskId, toolName, status, startTimeMs, endTimeMs })) return false;
    if (endTimeMs === 0) this.journaledStarts.add(task);
    return true;
  }

  /** One line of the task journal; false (logged) if it could not be written. Enough lines, and the record is written again to fold them in. */
  private appendLine(task: PersistedTask): boolean {
    try {
      this.journal.append(task);
    } catch (err) {
      this.logger.warn('could not append to the task journal; the whole record is written instead', { error: messageOf(err) });
      return false;
    }
    if (this.journal.lines >= JOURNAL_LINES_PER_RECORD) this.schedulePersist();
    return true;
  }

  /** Writes the record soon (task bookkeeping: the journal folded in, or in its place; atomic, not fsynced, one write per burst). */
  schedulePersist(): void {
    if (this.persistTimer || this.settled === CREATING) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      void this.write(false);
    }, PERSIST_DELAY_MS);
    this.persistTimer.unref();
  }

  /**
   * Writes one after another, so an older record never lands after a newer one. A write waiting
   * its turn takes the record when it starts, so a later one asked for meanwhile (as durable or
   * less) joins it: calls starting at once in a session make one write, not one each.
   */
  private write(durable: boolean): Promise<void> {
    if (this.queuedWrite && (this.queuedWrite.durable || !durable)) return this.queuedWrite.done;
    const queued: { durable: boolean; done: Promise<void> } = { durable, done: Promise.resolve() };
    queued.done = this.writing
      .then(async () => {
        if (this.queuedWrite === queued) this.queuedWrite = undefined;
        // The record holds every task change so far; the journal goes on in a new generation.
        const journal = this.journal.nextGeneration();
        await this.store.writeRecord(this.id, { ...this.record(), journal }, durable);
        await this.journal.settled(journal).catch((err: Error) => void this.logger.warn('could not remove old task journal files', { error: err.message }));
      })
      .catch((err: Error) => void this.logger.warn('could not persist the session record', { error: err.message }));
    this.queuedWrite = queued;
    this.writing = queued.done;
    return queued.done;
  }
}

/** Human name of a state for messages: SESSION_STATE_TERMINATING → TERMINATING. */
export function stateName(state: SessionState): string {
  return SessionState[state]?.replace('SESSION_STATE_', '') ?? String(state);
}
