import { statfs } from 'node:fs/promises';
import type { Logger } from '../../logger.js';
import type { Owner } from '../../storage/owner.js';
import type { Cgroup, CgroupLimits } from '../confine/cgroups.js';
import { TaskGroups } from '../confine/taskGroups.js';
import type { ProcessResult, ProcessSpec, RunOptions } from '../process/processSpec.js';
import { runProcess } from '../process/runProcess.js';
import { WarmInterpreter, type AheadGroups, type WarmProgram } from '../warm/warmInterpreter.js';

/**
 * What a SessionSandbox reaches the host through, owned here by its user: how it starts a
 * process cold and a warm one, its task groups, the free space it judges a full disk by, and the
 * clock. The worker gives the real ones (HOST_STARTERS); tests/unit/sessionSandbox.test.ts gives
 * fakes, so the sandbox's decisions (warm or cold, a task's limits, killed_by, one install at a
 * time, replacing a warm process) are tested without root or processes.
 */
export interface SessionStarters {
  /** Starts a confined process for one call and waits for it (process/runProcess.ts). */
  cold(spec: ProcessSpec, options: RunOptions): Promise<ProcessResult>;
  /**
   * Starts the session's warm process from its confined launch, listening on `socket`
   * (warm/warmInterpreter.ts); it places each child it forks ahead in a group from `groups`.
   */
  warm(socket: string, owner: Owner | undefined, launch: ProcessSpec, logger: Logger, groups: AheadGroups | undefined): Promise<WarmProcess>;
  /** The session's task groups, one per call, under its own cgroup (confine/taskGroups.ts). */
  taskGroups(session: Cgroup): SessionTaskGroups;
  /** Bytes free to the session on the filesystem holding `path`; undefined when it cannot be read. */
  freeBytes(path: string): Promise<number | undefined>;
  /** Milliseconds, for how long ago a warm start failed. */
  now(): number;
}

/** A session's warm process, as the session uses it. */
export interface WarmProcess {
  /** False once it died or was found broken: the next call starts another. */
  readonly alive: boolean;
  /** Forks `program` in `group`; throws WarmUnavailableError when the call must run cold instead. */
  run(program: WarmProgram, options: RunOptions, group: Cgroup): Promise<ProcessResult>;
  /**
   * The task group its child forked ahead waits in, for a call that narrows no limit to run in
   * (no move on the call's path); undefined when there is none. The group is the call's from
   * here on, given back as any call's.
   */
  claimAhead(): Promise<Cgroup | undefined>;
  close(): Promise<void>;
}

export interface SessionTaskGroups {
  /** A group for one call, narrowed by `limits`; may wait while the session holds its most. */
  take(limits: CgroupLimits, signal: AbortSignal): Promise<Cgroup>;
  /** Removes a call's group (or frees its place when there is none). */
  giveBack(group: Cgroup | undefined): void;
  /** A group for a child forked ahead of its call, if one is free now (TaskGroups.reserve). */
  reserve(): Promise<Cgroup> | undefined;
  dispose(): Promise<void>;
}

export const HOST_STARTERS: SessionStarters = {
  cold: runProcess,
  warm: (socket, owner, launch, logger, groups) => WarmInterpreter.start(socket, owner, launch, logger, groups),
  taskGroups: (session) => new TaskGroups(session),
  freeBytes: async (path) => {
    const fs = await statfs(path).catch(() => undefined);
    return fs && fs.bavail * fs.bsize;
  },
  now: () => Date.now(),
};
