import { SessionState } from '../../gen/codegen/v1/common.js';
import type { Logger } from '../logger.js';
import type { SessionSandbox } from '../sandbox/sessionSandbox.js';
import type { Tree } from '../storage/fileTree.js';
import { TaskRegistry } from '../tasks/taskRegistry.js';
import type { EffectiveSessionConfig } from './sessionConfig.js';

export interface SessionUsage {
  memoryBytes: number;
  cpuPercent: number;
  diskBytes: number;
}

/** The states a session is put in; ACTIVE is derived (READY with a task running). */
type SettledState = SessionState.SESSION_STATE_CREATING | SessionState.SESSION_STATE_READY | SessionState.SESSION_STATE_CHECKPOINTING | SessionState.SESSION_STATE_TERMINATING | SessionState.SESSION_STATE_FAILED;

/** One session: identity, configuration, state, its tasks, and the sandbox its code runs in. */
export class Session {
  readonly createdAtMs = Date.now();
  lastActivityMs = this.createdAtMs;
  settledState: SettledState = SessionState.SESSION_STATE_CREATING;
  readonly tasks: TaskRegistry;
  readonly artifacts: string[] = [];
  lastCheckpointId = '';
  /** The files as created or restored: what modified_files of a full checkpoint is measured from. */
  baselineTree: Tree = new Map();
  /** The session's previous checkpoint: the parent of an incremental one. */
  lastCheckpoint: { id: string; tree: Tree } | undefined;
  /** name → version of what pkg.install put in the environment. */
  readonly installedPackages = new Map<string, string>();
  private sandboxRef: SessionSandbox | undefined;

  constructor(
    readonly id: string,
    readonly workspaceId: string,
    readonly userId: string,
    readonly config: EffectiveSessionConfig,
    readonly logger: Logger,
    taskHistory: number,
    private readonly measureDisk: () => Promise<number>,
  ) {
    this.tasks = new TaskRegistry(id, taskHistory);
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

  /** Ends every process of the session and releases its sandbox. */
  async disposeSandbox(): Promise<void> {
    await this.sandboxRef?.dispose();
  }

  touch(): void {
    this.lastActivityMs = Date.now();
  }

  async usage(): Promise<SessionUsage> {
    const [processes, diskBytes] = await Promise.all([
      this.sandboxRef?.usage() ?? { memoryBytes: 0, cpuPercent: 0 },
      this.diskBytes(),
    ]);
    return { ...processes, diskBytes };
  }

  /** A capped workspace says what it holds; another is measured (bounded walk). */
  private async diskBytes(): Promise<number> {
    const capped = await this.sandboxRef?.quotaUsedBytes().catch(() => undefined);
    return capped ?? this.measureDisk().catch(() => 0);
  }
}

/** Human name of a state for messages: SESSION_STATE_TERMINATING → TERMINATING. */
export function stateName(state: SessionState): string {
  return SessionState[state]?.replace('SESSION_STATE_', '') ?? String(state);
}
