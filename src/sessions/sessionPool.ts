import { randomBytes } from 'node:crypto';
import { SessionState, type SessionConfig } from '../../gen/codegen/v1/common.js';
import { errors, faultOf, WorkerError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SandboxHost } from '../sandbox/sandboxHost.js';
import { SpareSessions } from './spareSessions.js';
import type { WorkspaceStore } from '../storage/workspaceStore.js';
import { Session, stateName } from './session.js';
import { effectiveSessionConfig } from './sessionConfig.js';

export interface SessionPoolOptions {
  maxSessions: number;
  taskHistory: number;
  /** Memory limit of sessions that set none, in MB (0: none). */
  defaultMemoryMb: number;
  sandboxHost: SandboxHost;
  store: WorkspaceStore;
  /** Sessions kept made ahead (0: none). */
  spareSessions: number;
  logger: Logger;
}

export interface CreateSessionInput {
  workspaceId: string;
  userId: string;
  config: SessionConfig | undefined;
}

export interface Capacity {
  total: number;
  active: number;
  available: number;
}

/** Session ids: `session-` and 128 random bits, URL-safe. */
function newSessionId(): string {
  return `session-${randomBytes(16).toString('base64url')}`;
}

/** The worker's sessions: capacity, creation, lookup and destruction. */
export class SessionPool {
  private readonly sessions = new Map<string, Session>();
  private accepting = true;
  private readonly spares: SpareSessions;

  constructor(private readonly options: SessionPoolOptions) {
    this.spares = new SpareSessions(options.store, options.sandboxHost, options.spareSessions, options.logger);
    this.spares.refill();
  }

  async create(input: CreateSessionInput): Promise<Session> {
    if (!this.accepting) throw errors.shuttingDown();
    if (!input.workspaceId) throw errors.invalidArgument('workspace_id is required');
    const config = effectiveSessionConfig(input.config);
    if (this.sessions.size >= this.options.maxSessions) throw errors.capacityExceeded(this.options.maxSessions);

    const id = newSessionId();
    const logger = this.options.logger.child({ session_id: id });
    const session = new Session(id, input.workspaceId, input.userId, config, logger, this.options.taskHistory, () => this.options.store.diskUsage(id));
    this.sessions.set(id, session); // holds the capacity slot while CREATING
    try {
      const { dirs, prepared } = await this.spares.take(id);
      const limits = config.limits;
      session.ready(
        await this.options.sandboxHost.activate(prepared, id, dirs, config.env, {
          maxMemoryMb: limits.maxMemoryMb || this.options.defaultMemoryMb,
          maxCpuPercent: limits.maxCpuPercent,
          maxDiskMb: limits.maxDiskMb,
        }),
      );
    } catch (err) {
      session.settledState = SessionState.SESSION_STATE_FAILED;
      this.sessions.delete(id);
      await this.options.store.remove(id).catch(() => undefined);
      logger.error('session initialization failed', { error: (err as Error).stack ?? String(err) });
      throw errors.initializationFailed(`could not create the workspace or Python environment (${faultOf(err)})`);
    }
    logger.info('session created', { workspace_id: input.workspaceId, user_id: input.userId });
    if (this.options.sandboxHost.options.mode === 'none') logger.warn('session runs WITHOUT a sandbox (WORKER_SANDBOX=none): its code can reach the host');
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

  /** Cancels the session's running tasks, waits for them to end, then removes its workspace. */
  async destroy(sessionId: string, reason = 'destroyed by DestroySession'): Promise<void> {
    const session = this.get(sessionId);
    if (session.settledState === SessionState.SESSION_STATE_TERMINATING) {
      throw errors.invalidSessionState(sessionId, stateName(session.state), 'destroy the session');
    }
    session.settledState = SessionState.SESSION_STATE_TERMINATING;
    try {
      await session.tasks.abortAll('session_destroyed', `session ${reason}`);
      await session.disposeSandbox();
      await this.options.store.remove(sessionId);
    } finally {
      this.sessions.delete(sessionId);
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
    const deadline = Date.now() + ms;
    while (this.list().some((s) => s.tasks.activeCount > 0)) {
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  /** Destroys every session and the spares; used at shutdown. */
  async destroyAll(reason: string): Promise<void> {
    await this.spares.drain();
    await Promise.all(
      this.list().map((s) =>
        this.destroy(s.id, reason).catch((err: unknown) => {
          if (!(err instanceof WorkerError)) throw err;
        }),
      ),
    );
  }
}
