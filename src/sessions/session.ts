import { SessionState } from '../../gen/codegen/v1/common.js';
import type { Logger } from '../logger.js';
import type { SessionSandbox } from '../sandbox/sessionSandbox.js';
import type { Tree, TreeEntry } from '../storage/fileTree.js';
import type { WorkspaceStore } from '../storage/workspaceStore.js';
import { TaskRegistry } from './taskRegistry.js';
import type { EffectiveSessionConfig } from './sessionConfig.js';
import type { SessionRecord } from './sessionRecord.js';

export interface SessionUsage {
  memoryBytes: number;
  cpuPercent: number;
  diskBytes: number;
}

/** The states a session is put in; ACTIVE is derived (READY with a task running). */
type SettledState = SessionState.SESSION_STATE_CREATING | SessionState.SESSION_STATE_READY | SessionState.SESSION_STATE_CHECKPOINTING | SessionState.SESSION_STATE_TERMINATING | SessionState.SESSION_STATE_FAILED;

export interface SessionOptions {
  id: string;
  workspaceId: string;
  userId: string;
  config: EffectiveSessionConfig;
  logger: Logger;
  taskHistory: number;
  store: WorkspaceStore;
  /** Set when the session is adopted from an earlier run of the worker. */
  createdAtMs?: number;
  lastActivityMs?: number;
}

/** How long task bookkeeping may wait before it is written (a burst of tasks is one write). */
const PERSIST_DELAY_MS = 200;
const CHECKPOINT_TREE = 'checkpoint-tree.json';
const BASELINE_TREE = 'baseline-tree.json';

/**
 * One session: identity, configuration, state, its tasks, and the sandbox its code runs in.
 * Everything that must outlive the worker process is written to its record (sessionRecord.ts)
 * when it changes: at once for what a client was told (created, checkpointed, recorded), within
 * PERSIST_DELAY_MS for task bookkeeping.
 */
export class Session {
  readonly id: string;
  readonly workspaceId: string;
  readonly userId: string;
  readonly config: EffectiveSessionConfig;
  readonly logger: Logger;
  readonly createdAtMs: number;
  lastActivityMs: number;
  settledState: SettledState = SessionState.SESSION_STATE_CREATING;
  readonly tasks: TaskRegistry;
  readonly artifacts: string[] = [];
  lastCheckpointId = '';
  /** The files as created or restored: what modified_files of a full checkpoint is measured from. */
  baselineTree: Tree = new Map();
  /** The session's previous checkpoint: the parent of an incremental one. */
  lastCheckpoint: { id: string; tree: Tree } | undefined;
  private sandboxRef: SessionSandbox | undefined;
  private readonly store: WorkspaceStore;
  private persistTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(options: SessionOptions) {
    this.id = options.id;
    this.workspaceId = options.workspaceId;
    this.userId = options.userId;
    this.config = options.config;
    this.logger = options.logger;
    this.store = options.store;
    this.createdAtMs = options.createdAtMs ?? Date.now();
    this.lastActivityMs = options.lastActivityMs ?? this.createdAtMs;
    this.tasks = new TaskRegistry(this.id, options.taskHistory);
    this.tasks.onChange = () => this.schedulePersist();
  }

  get state(): SessionState {
    if (this.settledState === SessionState.SESSION_STATE_READY && this.tasks.activeCount > 0) return SessionState.SESSION_STATE_ACTIVE;
    return this.settledState;
  }

  get sandbox(): SessionSandbox {
    if (!this.sandboxRef) throw new Error(`session ${this.id} has no sandbox yet`);
    return this.sandboxRef;
  }

  ready(sandbox: SessionSandbox): void {
    this.sandboxRef = sandbox;
    this.settledState = SessionState.SESSION_STATE_READY;
  }

  /** Ends every process of the session and releases its sandbox (its files stay). */
  async disposeSandbox(): Promise<void> {
    clearTimeout(this.persistTimer);
    await this.sandboxRef?.dispose();
  }

  touch(): void {
    this.lastActivityMs = Date.now();
    this.schedulePersist();
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
  async rememberCheckpoint(id: string, tree: Tree): Promise<void> {
    this.lastCheckpoint = { id, tree };
    this.lastCheckpointId = id;
    await this.store.writeExtra(this.id, CHECKPOINT_TREE, { id, entries: [...tree] });
    await this.persist();
  }

  /** The files a restore made: what modified_files is measured from. */
  async rememberBaseline(tree: Tree): Promise<void> {
    this.baselineTree = tree;
    await this.store.writeExtra(this.id, BASELINE_TREE, [...tree]);
  }

  /** The checkpoint trees an earlier run wrote (for an adopted session). */
  async loadTrees(): Promise<void> {
    const isEntries = (v: unknown) => Array.isArray(v) && v.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'object');
    const checkpoint = await this.store.readExtra<{ id: string; entries: [string, TreeEntry][] }>(this.id, CHECKPOINT_TREE, (v) => typeof (v as { id?: unknown })?.id === 'string' && isEntries((v as { entries?: unknown }).entries)).catch(() => undefined);
    if (checkpoint && checkpoint.id === this.lastCheckpointId) this.lastCheckpoint = { id: checkpoint.id, tree: new Map(checkpoint.entries) };
    const baseline = await this.store.readExtra<[string, TreeEntry][]>(this.id, BASELINE_TREE, isEntries).catch(() => undefined);
    if (baseline) this.baselineTree = new Map(baseline);
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
      diskMb: this.sandboxRef?.diskMb ?? 0,
      diskBaselineBytes: this.sandboxRef?.diskBaselineBytes ?? 0,
      lastCheckpointId: this.lastCheckpointId,
      artifacts: [...this.artifacts],
      tasks: this.tasks.snapshot(),
      state: this.settledState === SessionState.SESSION_STATE_TERMINATING ? 'TERMINATING' : 'READY',
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

  /** Writes the record soon (task bookkeeping: atomic, not fsynced, one write per burst). */
  schedulePersist(): void {
    if (this.persistTimer || this.settledState === SessionState.SESSION_STATE_CREATING) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      void this.write(false);
    }, PERSIST_DELAY_MS);
    this.persistTimer.unref();
  }

  /** Writes one after another, so an older record never lands after a newer one. */
  private write(durable: boolean): Promise<void> {
    const record = this.record();
    this.writing = this.writing
      .then(() => this.store.writeRecord(this.id, record, durable))
      .catch((err: Error) => void this.logger.warn('could not persist the session record', { error: err.message }));
    return this.writing;
  }
}

/** Human name of a state for messages: SESSION_STATE_TERMINATING → TERMINATING. */
export function stateName(state: SessionState): string {
  return SessionState[state]?.replace('SESSION_STATE_', '') ?? String(state);
}
