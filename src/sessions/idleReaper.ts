import { SessionState } from '../../gen/codegen/v1/common.js';
import type { Logger } from '../logger.js';
import type { SessionPool } from './sessionPool.js';
import { messageOf } from '../errors.js';

/**
 * Destroys sessions that ran no task for `idleSeconds` (0 disables). Returns a stop function.
 * Checks at a quarter of the idle time (at most every 30 s), so a session outlives its idle
 * time by at most that much.
 */
export function startIdleReaper(pool: SessionPool, idleSeconds: number, logger: Logger): () => void {
  if (idleSeconds === 0) return () => undefined;
  const idleMs = idleSeconds * 1000;
  const timer = setInterval(
    () => {
      const now = Date.now();
      for (const session of pool.list()) {
        if (session.state !== SessionState.SESSION_STATE_READY || now - session.lastActivityMs < idleMs) continue;
        pool.destroy(session.id, `idle for more than ${idleSeconds} s`).catch((err: unknown) => {
          logger.warn('idle session could not be destroyed', { session_id: session.id, error: messageOf(err) });
        });
      }
    },
    Math.min(Math.max(idleMs / 4, 100), 30_000),
  );
  timer.unref();
  return () => clearInterval(timer);
}
