import type { ResourceMetrics } from '../../gen/codegen/v1/common.js';
import type { SessionManagementServiceImplementation } from '../../gen/codegen/v1/session_management.js';
import type { Checkpoints } from '../sessions/checkpoints.js';
import type { CheckpointRecord } from '../storage/checkpointStore.js';
import type { Session } from '../sessions/session.js';
import type { SessionPool } from '../sessions/sessionPool.js';
import { checkLength, checkRequest, REQUEST_LIMITS } from './checkRequest.js';

async function usageOf(session: Session): Promise<ResourceMetrics> {
  return session.usage();
}

/** SessionManagement: a thin adapter from the wire to the session pool. */
function metadataOf(record: CheckpointRecord) {
  return {
    sessionId: record.sessionId,
    createdAtMs: record.createdAtMs,
    checksumSha256: record.checksumSha256,
    installedPackages: record.installedPackages,
    modifiedFiles: record.modifiedFiles,
  };
}

export function sessionManagementService(pool: SessionPool, checkpoints: Checkpoints, workerId: string): SessionManagementServiceImplementation {
  return {
    async createSession(request) {
      checkRequest(request, { workspaceId: 'name', userId: 'name' });
      if (request.config?.language) checkLength('config.language', request.config.language, REQUEST_LIMITS.nameChars);
      const session = await pool.create({ workspaceId: request.workspaceId, userId: request.userId, config: request.config });
      return { sessionId: session.id, workerId, state: session.state, createdAtMs: session.createdAtMs };
    },

    async destroySession(request) {
      checkRequest(request, { sessionId: 'id' });
      // A checkpoint asked for is made first; if it fails, nothing is destroyed.
      const checkpoint = request.createCheckpoint ? await checkpoints.checkpoint(request.sessionId, false) : undefined;
      await pool.destroy(request.sessionId);
      return { success: true, checkpointId: checkpoint?.checkpointId ?? '' };
    },

    async getSessionStatus(request) {
      checkRequest(request, { sessionId: 'id' });
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

    async checkpointSession(request) {
      checkRequest(request, { sessionId: 'id' });
      const record = await checkpoints.checkpoint(request.sessionId, request.incremental);
      return { checkpointId: record.checkpointId, sizeBytes: record.sizeBytes, storageUrl: record.storageUrl, metadata: metadataOf(record) };
    },

    async restoreSession(request) {
      checkRequest(request, { checkpointId: 'id' });
      const { session, record } = await checkpoints.restore(request.checkpointId);
      return { sessionId: session.id, workerId, state: session.state, checkpointMetadata: metadataOf(record) };
    },

    async getCapacity(request) {
      checkRequest(request, {});
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
