import type { ResourceMetrics } from '../../gen/codegen/v1/common.js';
import type { SessionManagementServiceImplementation } from '../../gen/codegen/v1/session_management.js';
import { errors } from '../errors.js';
import type { Session } from '../sessions/session.js';
import type { SessionPool } from '../sessions/sessionPool.js';

async function usageOf(session: Session): Promise<ResourceMetrics> {
  return session.usage();
}

/** SessionManagement: a thin adapter from the wire to the session pool. */
export function sessionManagementService(pool: SessionPool, workerId: string): SessionManagementServiceImplementation {
  return {
    async createSession(request) {
      const session = await pool.create({ workspaceId: request.workspaceId, userId: request.userId, config: request.config });
      return { sessionId: session.id, workerId, state: session.state, createdAtMs: session.createdAtMs };
    },

    async destroySession(request) {
      if (request.createCheckpoint) {
        pool.get(request.sessionId);
        // Refused before anything is destroyed, so asking for a checkpoint never loses the workspace.
        throw errors.unimplemented('DestroySession with create_checkpoint (checkpoints)');
      }
      await pool.destroy(request.sessionId);
      return { success: true, checkpointId: '' };
    },

    async getSessionStatus(request) {
      const session = pool.get(request.sessionId);
      return {
        sessionId: session.id,
        workspaceId: session.workspaceId,
        userId: session.userId,
        state: session.state,
        createdAtMs: session.createdAtMs,
        lastActivityMs: session.lastActivityMs,
        usage: await usageOf(session),
        activeTasks: session.tasks.activeCount,
        recentTasks: session.tasks.recentTaskIds(),
        lastCheckpointId: session.lastCheckpointId,
        artifacts: [...session.artifacts],
      };
    },

    async checkpointSession() {
      throw errors.unimplemented('CheckpointSession');
    },

    async restoreSession() {
      throw errors.unimplemented('RestoreSession');
    },

    async getCapacity() {
      const capacity = pool.capacity();
      const sessions = pool.list();
      const usages = await Promise.all(sessions.map(usageOf));
      return {
        totalSessions: capacity.total,
        activeSessions: capacity.active,
        availableSessions: capacity.available,
        sessions: sessions.map((s, i) => ({
          sessionId: s.id,
          workspaceId: s.workspaceId,
          state: s.state,
          lastActivityMs: s.lastActivityMs,
          usage: usages[i],
          activeTasks: s.tasks.activeCount,
        })),
      };
    },
  };
}
