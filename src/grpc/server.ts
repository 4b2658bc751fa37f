import { readFileSync } from 'node:fs';
import { applyServerStreamBackpressure } from './serverStreamBackpressure.js';
import { applyFramedReplies } from './framedReplies.js';
import { applyJoinedAsTheyCome } from './joinedAsTheyCome.js';
import { applyPacedIntake } from './pacedIntake.js';
import { BulkIntake } from './bulkIntake.js';
import { isAbortError } from 'abort-controller-x';
import type { ServerCredentials } from '@grpc/grpc-js';
import { createServer, type Server, type ServerMiddleware } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { ArtifactServiceDefinition } from '../../gen/codegen/v1/artifact_service.js';
import { SessionManagementDefinition } from '../../gen/codegen/v1/session_management.js';
import { TaskExecutionDefinition } from '../../gen/codegen/v1/task_execution.js';
import type { Logger } from '../logger.js';
import type { Artifacts } from '../artifacts/artifacts.js';
import type { Checkpoints } from '../sessions/checkpoints.js';
import type { TaskRunnerDeps } from '../tasks/runTask.js';
import type { SessionPool } from '../sessions/sessionPool.js';
import { artifactService } from './artifactService.js';
import { authenticate, tokenCheck } from './authenticate.js';
import { withMappedErrors } from './mapErrors.js';
import { observeCalls } from './observeCalls.js';
import { sessionManagementService } from './sessionManagementService.js';
import { taskExecutionService } from './taskExecutionService.js';
import { tolerantDefinition } from './tolerantDefinition.js';
import { unCopiedReplies } from './unCopiedReplies.js';
import { encodeLargeResultReply } from './resultReplyEncoding.js';
import { largeArgumentsAsBytes } from './taskRequestDecoding.js';

export interface GrpcServerOptions {
  address: string;
  credentials: ServerCredentials;
  workerId: string;
  maxMessageBytes: number;
  /** WORKER_BULK_INTAKE_MB_PER_S in bytes (bulkIntake.ts). */
  bulkIntakeBytesPerSecond: number;
  /** WORKER_AUTH_TOKEN: every call but health checks must carry it. */
  authToken: string | undefined;
  /** Count and log every call (observeCalls.ts). */
  observe: boolean;
  /** The sessions SessionManagement creates, lists and destroys. */
  sessions: SessionPool;
  tasks: TaskRunnerDeps;
  checkpoints: Checkpoints;
  artifacts: Artifacts;
  logger: Logger;
}

export interface GrpcServer {
  server: Server;
  port: number;
  /** SERVING / NOT_SERVING for the whole server and each service, as grpc.health.v1 reports it. */
  setServing(serving: boolean): void;
  /** Ends health Watch streams (they would otherwise hold a graceful shutdown open). */
  endWatches(): void;
}

const SERVICES = [SessionManagementDefinition, TaskExecutionDefinition, ArtifactServiceDefinition].map((d) => d.fullName);

/** The protos as a FileDescriptorSet (`make generate` writes it), for server reflection. */
const DESCRIPTORS = new URL('../../../gen/codegen.binpb', import.meta.url);

/** Large requests' announced bytes received at once, all calls together (bulkIntake.ts). */
const BULK_BYTES_AT_ONCE = 128 * 1024 * 1024;
/** How long a large request holding its turn may take in nothing while others wait. */
const BULK_STALL_MS = 10_000;

/**
 * Starts the worker's gRPC services, grpc.health.v1 (no token needed: load balancers and
 * Kubernetes probe it) and server reflection (v1 and v1alpha, so grpcurl works without protos).
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  applyServerStreamBackpressure();
  applyFramedReplies();
  applyJoinedAsTheyCome();
  applyPacedIntake(new BulkIntake({ bytesAtOnce: BULK_BYTES_AT_ONCE, bytesPerSecondWhileBusy: options.bulkIntakeBytesPerSecond, stallMs: BULK_STALL_MS }));
  const { logger } = options;
  const server = createServer({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': options.maxMessageBytes,
    // channelz (grpc-js's introspection service) is not served, so its per-call bookkeeping is off.
    'grpc.enable_channelz': 0,
  });
  const health = HealthState();
  const watches = endableCalls();
  server.with(watches.middleware).add(HealthDefinition, HealthServiceImpl(health));

  // Middleware only where configured: none on the echo path when neither is.
  const check = options.authToken ? tokenCheck(options.authToken) : undefined;
  const middleware = options.observe ? [observeCalls(logger, check)] : check ? [authenticate(check)] : [];
  const guarded = middleware.reduce<{ add: Server['add'] }>((builder, m) => (builder as Server).with(m), server);
  guarded.add(
    tolerantDefinition(SessionManagementDefinition),
    withMappedErrors(SessionManagementDefinition, sessionManagementService(options.sessions, options.checkpoints, options.workerId), logger),
  );
  guarded.add(
    tolerantDefinition(unCopiedReplies(largeArgumentsAsBytes(TaskExecutionDefinition), encodeLargeResultReply)),
    withMappedErrors(TaskExecutionDefinition, taskExecutionService(options.tasks), logger),
  );
  guarded.add(tolerantDefinition(ArtifactServiceDefinition), withMappedErrors(ArtifactServiceDefinition, artifactService(options.artifacts), logger));
  const reflection = ServerReflection(readFileSync(DESCRIPTORS), SERVICES);
  guarded.add(ServerReflectionService, reflection);
  guarded.add(v1alpha(ServerReflectionService), reflection);

  const port = await server.listen(options.address, options.credentials);
  const setServing = (serving: boolean) => {
    for (const service of ['', ...SERVICES]) health.setStatus(serving ? 'healthy' : 'unhealthy', service);
  };
  setServing(true);
  return { server, port, setServing, endWatches: () => watches.end() };
}

/** The same reflection service under its older name, which many clients still ask for first. */
function v1alpha<T extends Record<string, { path: string }>>(definition: T): T {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => [name, { ...method, path: method.path.replace('grpc.reflection.v1.', 'grpc.reflection.v1alpha.') }]),
  ) as T;
}

/** Calls that end normally (not CANCELLED) when end() is called: long-lived streams at shutdown. */
function endableCalls(): { middleware: ServerMiddleware; end(): void } {
  const live = new Set<AbortController>();
  return {
    middleware: async function* endable(call, context) {
      const controller = new AbortController();
      const onAbort = () => controller.abort();
      context.signal.addEventListener('abort', onAbort);
      live.add(controller);
      try {
        return yield* call.next(call.request, { ...context, signal: controller.signal });
      } catch (err) {
        if (isAbortError(err) && !context.signal.aborted) return;
        throw err;
      } finally {
        live.delete(controller);
        context.signal.removeEventListener('abort', onAbort);
      }
    },
    end: () => live.forEach((c) => c.abort()),
  };
}
