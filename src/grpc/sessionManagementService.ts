import type { SessionManagementServiceImplementation } from '../../gen/codegen/v1/session_management.js';
import type { Checkpoints } from '../sessions/checkpoints.js';
import type { CheckpointRecord } from '../storage/checkpointStore.js';
import type { SessionPool } from '../sessions/sessionPool.js';
import { sessionConfigOf } from '../sessions/sessionConfig.js';
import { checkLength, checkRequest, REQUEST_LIMITS } from './checkRequest.js';

/** A checkpoint's record as the API's CheckpointMetadata. */
function metadataOf(record: CheckpointRecord) {
  return {
    sessionId: record.sessionId,
    createdAtMs: record.createdAtMs,
    checksumSha256: record.checksumSha256,
    installedPackages: record.installedPackages,
    modifiedFiles: record.modifiedFiles,
    modifiedFilesTruncated: record.modifiedFilesTruncated ?? false,
  };
}

/**
 * SessionManagement: a thin adapter from the wire to the session pool and checkpoints. One short
 * handler per RPC (check the request, call the domain, shape the reply), kept together as the
 * service they implement, so the function is as long as the service is wide.
 */
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

    async forkSession(request) {
      checkRequest(request, { sessionId: 'id', workspaceId: 'name' });
      const forked = await pool.fork(request.sessionId, request.count || 1, request.workspaceId);
      return { sessionIds: forked.sessions.map((s) => s.id), workerId, copyMethod: forked.copyMethod, pausedMs: forked.pausedMs };
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
        usage: await session.usage(),
        activeTasks: session.tasks.activeCount,
        recentTasks: session.tasks.recentTaskIds(),
        lastCheckpointId: session.lastCheckpointId,
        artifacts: [...session.artifacts],
        network: sessionConfigOf(session.config).network,
        language: session.config.language,
      };
    },

    async checkpointSession(request) {
      checkRequest(request, { sessionId: 'id' });
      const record = await checkpoints.checkpoint(request.sessionId, request.incremental);
      return { checkpointId: record.checkpointId, sizeBytes: record.sizeBytes, storageUrl: record.storageUrl, metadata: metadataOf(record) };
    },

    async restoreSession(request, context) {
      checkRequest(request, { checkpointId: 'id' });
      const { session, record } = await checkpoints.restore(request.checkpointId, context.signal);
      return { sessionId: session.id, workerId, state: session.state, checkpointMetadata: metadataOf(record) };
    },

    async getCapacity(request) {
      checkRequest(request, {});
      const capacity = pool.capacity();
      const sessions = pool.list();
      const usages = await Promise.all(sessions.map((s) => s.usage()));
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
