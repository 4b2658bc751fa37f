import { createServer, type Server } from 'nice-grpc';
import { ArtifactServiceDefinition } from '../../gen/codegen/v1/artifact_service.js';
import { SessionManagementDefinition } from '../../gen/codegen/v1/session_management.js';
import { TaskExecutionDefinition } from '../../gen/codegen/v1/task_execution.js';
import type { Logger } from '../logger.js';
import type { Artifacts } from '../artifacts/artifacts.js';
import type { Checkpoints } from '../sessions/checkpoints.js';
import type { TaskRunnerDeps } from '../tasks/runTask.js';
import { artifactService } from './artifactService.js';
import { withMappedErrors } from './mapErrors.js';
import { sessionManagementService } from './sessionManagementService.js';
import { taskExecutionService } from './taskExecutionService.js';
import { tolerantDefinition } from './tolerantDefinition.js';

export interface GrpcServerOptions {
  address: string;
  workerId: string;
  maxMessageBytes: number;
  tasks: TaskRunnerDeps;
  checkpoints: Checkpoints;
  artifacts: Artifacts;
  logger: Logger;
}

/** Starts the worker's gRPC services; resolves with the server and the port it listens on. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<{ server: Server; port: number }> {
  const server = createServer({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': options.maxMessageBytes,
    // channelz (grpc-js's introspection service) is not served, so its per-call bookkeeping is off.
    'grpc.enable_channelz': 0,
  });
  const { logger } = options;
  server.add(tolerantDefinition(SessionManagementDefinition), withMappedErrors(SessionManagementDefinition, sessionManagementService(options.tasks.pool, options.checkpoints, options.workerId), logger));
  server.add(tolerantDefinition(TaskExecutionDefinition), withMappedErrors(TaskExecutionDefinition, taskExecutionService(options.tasks), logger));
  server.add(tolerantDefinition(ArtifactServiceDefinition), withMappedErrors(ArtifactServiceDefinition, artifactService(options.artifacts), logger));
  const port = await server.listen(options.address);
  return { server, port };
}
