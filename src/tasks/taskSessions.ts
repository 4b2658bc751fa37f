import type { LanguageName } from '../sessions/sessionConfig.js';
import type { Session } from '../sessions/session.js';
import type { ToolSession } from '../tools/tool.js';

/** What running a task logs through (the session's winston logger is one). */
export interface TaskLogger {
  log(level: string, message: string, meta: Record<string, unknown>): void;
  debug(message: string, meta: Record<string, unknown>): void;
  error(message: string, meta: Record<string, unknown>): void;
  isLevelEnabled(level: string): boolean;
  isDebugEnabled(): boolean;
}

/** What running a task uses of its session (sessions/session.ts's Session is one). */
export type TaskSession = ToolSession &
  Pick<Session, 'id' | 'state' | 'tasks' | 'payloads' | 'touch' | 'recordTask' | 'recordOutcome'> & {
    readonly config: { readonly language: LanguageName; readonly limits: { readonly timeoutSeconds: number } };
    readonly logger: TaskLogger;
  };

/** Where tasks find their sessions (sessions/sessionPool.ts's SessionPool is one). */
export interface TaskSessions {
  /** False once the worker is shutting down: no new task starts. */
  readonly isAccepting: boolean;
  /** The session `sessionId`; NOT_FOUND when there is none. */
  get(sessionId: string): TaskSession;
}
