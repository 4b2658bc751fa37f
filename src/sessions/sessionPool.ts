import type { TreeMemory } from './treeMemory.js';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { SessionState, type SessionConfig } from '../../gen/codegen/v1/common.js';
import { describeThrown, errors, faultOf, messageOf, WorkerError } from '../errors.js';
import type { Logger } from '../logger.js';
import { unmountDiskImage } from '../sandbox/confine/diskImage.js';
import type { SandboxHost } from '../sandbox/host/sandboxHost.js';
import type { CopyMethod } from '../sandbox/confine/diskFork.js';
import type { SessionLimits } from '../sandbox/process/processSpec.js';
import { NETWORK_MODES, type SessionNetworkPolicy } from '../sandbox/network/networkPolicy.js';
import type { WorkspaceStore } from '../storage/workspaceStore.js';
import { Session, stateName } from './session.js';
import { effectiveSessionConfig, type EffectiveSessionConfig } from './sessionConfig.js';
import { cutOff, journalTasks, lastActivity, parseSessionRecord, withJournal, type SessionRecord } from './sessionRecord.js';
import { SpareSessions } from './spareSessions.js';

export interface SessionPoolOptions {
  maxSessions: number;
  taskHistory: number;
  /** Memory limit of sessions that set none, in MB (0: none). */
  defaultMemoryMb: number;
  /** CPU limit of sessions that set none, in percent of one core (0: none). */
  defaultCpuPercent: number;
  /** Disk limit of sessions that set none, in MB (0: none). */
  defaultDiskMb: number;
  /** The largest disk limit a session may ask for (WORKER_MAX_DISK_MB). */
  maxDiskMb: number;
  sandboxHost: SandboxHost;
  store: WorkspaceStore;
  /** The worker's heap for file trees, all sessions together. */
  treeMemory: TreeMemory;
  /** Sessions kept made ahead (0: none). */
  spareSessions: number;
  logger: Logger;
}

export interface CreateSessionInput {
  workspaceId: string;
  userId: string;
  config: SessionConfig | undefined;
}

/** What a fork made. */
export interface Forked {
  sessions: Session[];
  /** How the source's disk was copied, and how long its writers waited for it (0 for clones). */
  copyMethod: CopyMethod;
  pausedMs: number;
}

/** Forks one ForkSession may ask for. */
export const MAX_FORKS = 16;

export interface Capacity {
  total: number;
  active: number;
  available: number;
}

/** What an adoption at start-up found. */
export interface Adopted {
  adopted: number;
  quarantined: number;
  tasksCutOff: number;
}

/** Session ids: `session-` and 128 random bits, URL-safe. */
function newSessionId(): string {
  return `session-${randomBytes(16).toString('base64url')}`;
}

/**
 * The worker's sessions: capacity, creation, lookup and destruction, and their life across
 * runs of the worker: adopted at start-up from their records, left on disk at shutdown.
 */
export class SessionPool {
  private readonly sessions = new Map<string, Session>();
  private accepting = true;
  private readonly spares: SpareSessions;
  /** Forks being made, by source: its destruction waits for them (its disk is being copied), and a shutdown for all. */
  private readonly forking = new Map<string, Set<Promise<unknown>>>();

  constructor(private readonly options: SessionPoolOptions) {
    this.spares = new SpareSessions(options.store, options.sandboxHost, options.spareSessions, this.diskMbOf(0), options.logger);
  }

  /** The worker's heap for file trees, all sessions together (a checkpoint holds its share too). */
  get treeMemory(): TreeMemory {
    return this.options.treeMemory;
  }

  /** Starts making spare sessions (after adoption, so they do not take adopted sessions' uids). */
  startSpares(): void {
    this.spares.refill();
  }

  /** Resolves once the first spare is ready, or none will be (none wanted, or making one failed). */
  firstSpareReady(): Promise<void> {
    return this.spares.firstReady();
  }

  async create(input: CreateSessionInput): Promise<Session> {
    if (!this.accepting) throw errors.shuttingDown();
    if (!input.workspaceId) throw errors.invalidArgument('workspace_id is required');
    const sandboxHost = this.options.sandboxHost;
    const config = effectiveSessionConfig(
      input.config,
      sandboxHost.languages.map((l) => l.name),
      sandboxHost.options.network,
    );
    const language = sandboxHost.language(config.language)!;
    if (config.limits.maxDiskMb > this.options.maxDiskMb)
      throw errors.invalidArgument(
        `config.limits.max_disk_mb must be at most ${this.options.maxDiskMb} on this worker (WORKER_MAX_DISK_MB), got ${config.limits.maxDiskMb}`,
      );
    if (config.limits.maxDiskMb > 0 && !this.options.sandboxHost.diskLimits)
      throw errors.invalidArgument('config.limits.max_disk_mb: this worker cannot enforce disk limits (see its sandbox ready log line)');
    // A language other than the default may still be checking its sandbox (the worker serves meanwhile).
    await sandboxHost.languageReady(language).catch(() => {
      throw errors.initializationFailed(`${language.name} sessions are unavailable on this worker: its sandbox self-check failed (the worker's log says why)`);
    });
    if (!this.accepting) throw errors.shuttingDown();
    if (this.sessions.size >= this.options.maxSessions) throw errors.capacityExceeded(this.options.maxSessions);

    const id = newSessionId();
    const session = this.newSession(id, input.workspaceId, input.userId, config);
    this.sessions.set(id, session); // holds the capacity slot while CREATING
    try {
      const limits = this.limitsOf(config);
      const { dirs, prepared } = await this.spares.take(id, limits.maxDiskMb);
      session.ready(await sandboxHost.activate(prepared, id, dirs, config.env, limits, language, config.network));
      await session.persist(false);
    } catch (err) {
      session.fail();
      this.remove(session);
      await session.disposeSandbox().catch(() => undefined);
      await this.options.store.remove(id).catch(() => undefined);
      session.logger.error('session initialization failed', { error: describeThrown(err) });
      if (err instanceof WorkerError) throw err; // not enough disk to reserve, …
      throw errors.initializationFailed(`could not create the workspace or ${config.language} environment (${faultOf(err)})`);
    }
    session.logger.info('session created', { workspace_id: input.workspaceId, user_id: input.userId, disk_mb: session.sandbox.diskMb });
    if (this.options.sandboxHost.options.mode === 'none')
      session.logger.warn('session runs WITHOUT a sandbox (WORKER_SANDBOX=none): its code can reach the host');
    return session;
  }

  get(sessionId: string): Session {
    const session = this.sessions.get(sessionId);
    if (!session) throw errors.sessionNotFound(sessionId);
    return session;
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }

  capacity(): Capacity {
    const active = this.sessions.size;
    return { total: this.options.maxSessions, active, available: Math.max(this.options.maxSessions - active, 0) };
  }

  /**
   * `count` new sessions holding the source's files, environment, config, limits and network
   * policy at one instant (its disk copied at once: SandboxHost.copyDisk), each with a uid,
   * cgroup and network of its own, READY, independent from then on. Its processes are not
   * copied; its checkpoint history is (the fork's next incremental checkpoint builds on it).
   */
  async fork(sourceId: string, count: number, workspaceId: string): Promise<Forked> {
    if (!this.accepting) throw errors.shuttingDown();
    if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS) throw errors.invalidArgument(`count must be 1 to ${MAX_FORKS}, got ${count}`);
    const source = this.get(sourceId);
    const state = source.state;
    if (state !== SessionState.SESSION_STATE_READY && state !== SessionState.SESSION_STATE_ACTIVE && state !== SessionState.SESSION_STATE_CHECKPOINTING)
      throw errors.invalidSessionState(sourceId, stateName(state), 'fork the session');
    if (source.sandbox.diskMb <= 0)
      throw errors.forkUnavailable(
        sourceId,
        'it has no disk of its own (max_disk_mb 0, or this worker gives sessions none), and only a session disk can be copied at one instant',
      );
    const free = this.options.maxSessions - this.sessions.size;
    if (count > free) throw errors.forksPastCapacity(count, free, this.options.maxSessions);
    const forks = Array.from({ length: count }, () => this.newSession(newSessionId(), workspaceId || source.workspaceId, source.userId, source.config));
    for (const fork of forks) this.sessions.set(fork.id, fork); // their capacity slots, while CREATING
    const made = this.makeForks(source, forks);
    const ofSource = this.forking.get(sourceId) ?? new Set();
    this.forking.set(sourceId, ofSource.add(made));
    try {
      return await made;
    } finally {
      ofSource.delete(made);
      if (ofSource.size === 0 && this.forking.get(sourceId) === ofSource) this.forking.delete(sourceId);
    }
  }

  /** Resolves once the forks being made (of `sourceId`, or of any session) are made or given up. */
  private async forksSettled(sourceId?: string): Promise<void> {
    const sets = sourceId === undefined ? [...this.forking.values()] : [this.forking.get(sourceId) ?? new Set()];
    await Promise.allSettled(sets.flatMap((set) => [...set]));
  }

  private async makeForks(source: Session, forks: Session[]): Promise<Forked> {
    const sandboxHost = this.options.sandboxHost;
    const store = this.options.store;
    const started = process.hrtime.bigint();
    try {
      const dirs = await Promise.all(forks.map((fork) => store.create(fork.id)));
      // The worker's own writes into the source (fs.write) are whole in the copy or not in it.
      const { pausedMs } = await source.writes.copy(() => sandboxHost.copyDisk(store.directories(source.id), source.sandbox.diskMb, dirs));
      const limits = { ...this.limitsOf(source.config), maxDiskMb: source.sandbox.diskMb };
      const language = source.sandbox.language;
      const persisted = { uid: source.sandbox.owner?.uid, diskUid: source.sandbox.diskUid, diskBaselineBytes: source.sandbox.diskBaselineBytes, copied: true };
      // Every fork settles before any failure is handled: none is left made but unowned.
      const opened = await Promise.allSettled(
        forks.map(async (fork, i) => {
          await fork.inherit(source);
          fork.ready(await sandboxHost.adopt(fork.id, dirs[i]!, source.config.env, limits, language, persisted, source.config.network));
          await fork.persist();
        }),
      );
      const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failed) throw failed.reason;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      for (const fork of forks)
        fork.logger.info('session forked', { source: source.id, copy_method: sandboxHost.copyMethod, paused_ms: pausedMs, ms: Math.round(ms) });
      return { sessions: forks, copyMethod: sandboxHost.copyMethod, pausedMs };
    } catch (err) {
      await Promise.all(
        forks.map(async (fork) => {
          if (fork.state === SessionState.SESSION_STATE_CREATING) fork.fail();
          this.remove(fork);
          await fork.disposeSandbox().catch(() => undefined);
          await unmountDiskImage(store.directories(fork.id).disk).catch(() => undefined);
          await store.remove(fork.id).catch(() => undefined);
        }),
      );
      // Refused (no room on the data disk, …): the client's to handle, said at info; else the worker's fault.
      if (err instanceof WorkerError) {
        source.logger.info('fork refused', { reason: err.details });
        throw err;
      }
      source.logger.error('fork failed', { error: describeThrown(err) });
      throw errors.initializationFailed(`could not fork session ${source.id} (${faultOf(err)})`);
    }
  }

  /** Cancels the session's running tasks, waits for them to end, then removes its files. */
  async destroy(sessionId: string, reason = 'destroyed by DestroySession'): Promise<void> {
    const session = this.get(sessionId);
    session.beginTermination();
    try {
      await this.forksSettled(sessionId);
      // A restart in the middle finishes the destruction rather than bringing the session back.
      await session.persist();
      await session.tasks.abortAll('session_destroyed', `session ${reason}`);
      await session.disposeSandbox();
      await this.options.store.remove(sessionId);
    } finally {
      this.remove(session);
    }
    session.logger.info('session destroyed', { reason });
  }

  /** Refuses new sessions from now on (shutdown). */
  stopAccepting(): void {
    this.accepting = false;
  }

  get isAccepting(): boolean {
    return this.accepting;
  }

  /** Resolves true once no session runs a task, false if `ms` pass first. */
  async waitForIdle(ms: number): Promise<boolean> {
    const timer = new AbortController();
    const idle = Promise.all(this.list().map((s) => s.tasks.idle())).then(() => true);
    try {
      return await Promise.race([idle, delay(ms, false, { signal: timer.signal }).catch(() => false)]);
    } finally {
      timer.abort();
    }
  }

  /**
   * Shutdown: the spares go; each session's running tasks are cancelled, its record written, its
   * processes ended and its disk unmounted. Its files stay for the next start to adopt.
   */
  async suspendAll(reason: string): Promise<void> {
    await this.spares.drain();
    // Forks being made become sessions first (or are given up): none is left mounted but unowned.
    await this.forksSettled();
    await Promise.all(
      this.list().map(async (session) => {
        await session.tasks.abortAll('shutdown', reason);
        await session.persist();
        await session.disposeSandbox(true);
        this.remove(session);
      }),
    );
  }

  /** Destroys every session and the spares (a second signal: nothing is kept). */
  async destroyAll(reason: string): Promise<void> {
    await this.spares.drain();
    await this.forksSettled();
    await Promise.all(
      this.list().map((s) =>
        this.destroy(s.id, reason).catch((err: unknown) => {
          if (!(err instanceof WorkerError)) throw err;
        }),
      ),
    );
  }

  /**
   * Takes back every session an earlier run of the worker left in the data directory: READY,
   * with its files, packages, limits, checkpoints, artifacts and task history; tasks that were
   * running are FAILURE. Spares it left are removed; a destroy it was doing is finished; a
   * session whose record or files are damaged is moved aside (quarantine) and logged.
   */
  async adoptAll(): Promise<Adopted> {
    const found: Adopted = { adopted: 0, quarantined: 0, tasksCutOff: 0 };
    const names = await this.options.store.names();
    await Promise.all(
      names.map(async (name) => {
        if (name.startsWith('.')) return this.removeLeft(name);
        try {
          const record = parseSessionRecord((await this.options.store.readRecord(name)) ?? '', name);
          const journaled = journalTasks(await this.options.store.readTaskJournal(name, record.journal ?? 0));
          record.tasks = withJournal(record.tasks, journaled, this.options.taskHistory);
          record.lastActivityMs = lastActivity(record.lastActivityMs, journaled, Date.now());
          if (record.state === 'TERMINATING') return await this.removeLeft(name);
          found.tasksCutOff += await this.adopt(record);
          found.adopted++;
        } catch (err) {
          found.quarantined++;
          await this.quarantine(name, err);
        }
      }),
    );
    return found;
  }

  private async adopt(record: SessionRecord): Promise<number> {
    const config = { ...record.config, network: this.withinCeiling(record) };
    const session = this.newSession(record.id, record.workspaceId, record.userId, config, record);
    const now = Date.now();
    const tasks = record.tasks.map((t) => cutOff(t, now));
    const kept = tasks.filter((t, i) => t === record.tasks[i]);
    // Listed as the worker listed them running: by start, newest first; a tie in the order they
    // came (the record's and journal's order stands for it). Finished, the newest go last.
    const cut = tasks
      .map((task, i) => ({ task, i }))
      .filter(({ task, i }) => task !== record.tasks[i])
      .sort((a, b) => a.task.startTimeMs - b.task.startTimeMs || b.i - a.i)
      .map(({ task }) => task);
    for (const task of cut) session.logger.warn('task cut off: the worker restarted during the task', { task_id: task.taskId, tool: task.toolName });
    session.resume(record, kept, cut);
    const dirs = this.options.store.directories(record.id);
    const limits = { ...this.limitsOf(record.config), maxDiskMb: record.diskMb };
    const language = this.options.sandboxHost.language(record.config.language);
    if (!language) throw new Error(`its language ${record.config.language} is not among this worker's (WORKER_LANGUAGES)`);
    const persisted = { uid: record.uid, diskUid: record.diskUid, diskBaselineBytes: record.diskBaselineBytes };
    session.ready(await this.options.sandboxHost.adopt(record.id, dirs, record.config.env, limits, language, persisted, config.network));
    this.sessions.set(record.id, session);
    await session.persist();
    session.logger.info('session adopted from an earlier run', { workspace_id: record.workspaceId, tasks_cut_off: cut.length });
    return cut.length;
  }

  /** Unmounts and moves aside a session that cannot be adopted, keeping it for a person to look at. */
  private async quarantine(name: string, err: unknown): Promise<void> {
    const dirs = this.options.store.directories(name);
    await unmountDiskImage(dirs.disk).catch(() => undefined);
    const aside = await this.options.store.quarantine(name).catch(() => undefined);
    this.options.logger.warn('session could not be adopted; moved aside', {
      session_id: name.slice(0, 80),
      reason: messageOf(err),
      quarantined_to: aside,
    });
  }

  /** Removes what an earlier run left that is no session to adopt (a spare, a half-destroyed session). */
  private async removeLeft(name: string): Promise<void> {
    await unmountDiskImage(this.options.store.directories(name).disk).catch(() => undefined);
    await this.options.store
      .remove(name)
      .catch((err: Error) => this.options.logger.warn('could not remove what an earlier run left', { name, error: err.message }));
  }

  /** Takes a session out of the pool (its capacity slot and its trees' memory). */
  private remove(session: Session): void {
    if (this.sessions.get(session.id) === session) this.sessions.delete(session.id);
    session.trees.forget();
  }

  private newSession(id: string, workspaceId: string, userId: string, config: EffectiveSessionConfig, persisted?: SessionRecord): Session {
    return new Session({
      id,
      workspaceId,
      userId,
      config,
      logger: this.options.logger.child({ session_id: id }),
      taskHistory: this.options.taskHistory,
      store: this.options.store,
      treeMemory: this.options.treeMemory,
      createdAtMs: persisted?.createdAtMs,
      lastActivityMs: persisted?.lastActivityMs,
    });
  }

  /** An adopted session's policy, narrowed to this run's ceiling (WORKER_NETWORK_MAX may have been lowered since). */
  private withinCeiling(record: SessionRecord): SessionNetworkPolicy {
    const policy = record.config.network;
    const max = this.options.sandboxHost.options.network.maxMode;
    if (NETWORK_MODES.indexOf(policy.mode) <= NETWORK_MODES.indexOf(max)) return policy;
    this.options.logger.warn('adopted session narrowed to WORKER_NETWORK_MAX', { session_id: record.id, asked: policy.mode, max });
    return { mode: max, allow: max === 'none' ? [] : policy.allow };
  }

  private limitsOf(config: EffectiveSessionConfig): SessionLimits {
    const limits = config.limits;
    return {
      maxMemoryMb: limits.maxMemoryMb || this.options.defaultMemoryMb,
      maxCpuPercent: limits.maxCpuPercent || this.options.defaultCpuPercent,
      maxDiskMb: this.diskMbOf(limits.maxDiskMb),
    };
  }

  /** The disk a session gets: its own limit, else the default, and none where images cannot be made. */
  private diskMbOf(asked: number): number {
    if (!this.options.sandboxHost.diskLimits) return 0;
    return asked || this.options.defaultDiskMb;
  }
}
