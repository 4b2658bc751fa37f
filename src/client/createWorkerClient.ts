import { createChannel, createClientFactory, Metadata, type Channel, type ChannelCredentials, type ChannelOptions } from 'nice-grpc';
import { deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { retryMiddleware } from 'nice-grpc-client-middleware-retry';
import { ArtifactServiceDefinition, type ArtifactServiceClient } from '../../gen/codegen/v1/artifact_service.js';
import { SessionManagementDefinition, type SessionManagementClient } from '../../gen/codegen/v1/session_management.js';
import { TaskExecutionDefinition, type TaskExecutionClient } from '../../gen/codegen/v1/task_execution.js';
import { unCopiedRequests } from './unCopiedRequests.js';

export interface WorkerClientOptions {
  /** Largest message either way, bytes (default 64 MiB, the worker's default). */
  maxMessageBytes?: number;
  /** The worker's WORKER_AUTH_TOKEN: sent as `authorization: Bearer <token>` on every call. */
  token?: string | undefined;
  /** TLS (and client certificates) for a worker serving TLS; plaintext otherwise. */
  credentials?: ChannelCredentials | undefined;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

/** Per-call options the client's middleware understands. */
export interface WorkerCallOptions {
  /** A Date, or milliseconds from now, after which the call fails DEADLINE_EXCEEDED. */
  deadline?: Date | number;
  /** Retry on UNAVAILABLE and similar; on by default only for calls safe to repeat. */
  retry?: boolean;
  retryMaxAttempts?: number;
}

export interface WorkerClient {
  sessions: SessionManagementClient<WorkerCallOptions>;
  tasks: TaskExecutionClient<WorkerCallOptions>;
  artifacts: ArtifactServiceClient<WorkerCallOptions>;
  channel: Channel;
  close(): void;
}

/**
 * How many bytes the worker may send ahead of what the client has read, per call and per
 * connection. HTTP/2's default, 64 KiB, made every large reply (fs.read of a megabyte) wait on a
 * round trip of flow control per 64 KiB: a bare grpc-js echo of 1 MB took 5× longer than with this
 * window (24 ms against 5, on 2 shared cores).
 */
const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * Typed clients of the worker's three services on one channel, with deadline middleware, and
 * retry middleware that retries by default only the calls the protos mark safe to repeat
 * (GetSessionStatus, GetCapacity, GetTaskStatus, CancelTask).
 */
export function createWorkerClient(address: string, options: WorkerClientOptions = {}): WorkerClient {
  const max = options.maxMessageBytes ?? 64 * 1024 * 1024;
  const channel = createChannel(address, options.credentials, {
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': max,
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
    ...options.channelOptions,
  });
  const token = options.token;
  const factory = createClientFactory()
    .use(async function* bearer(call, callOptions) {
      if (!token) return yield* call.next(call.request, callOptions);
      const metadata = Metadata(callOptions.metadata).set('authorization', `Bearer ${token}`);
      return yield* call.next(call.request, { ...callOptions, metadata });
    })
    .use(retryMiddleware)
    .use(deadlineMiddleware)
    .use(async function* defaultRetries(call, callOptions) {
      return yield* call.next(call.request, { retryMaxAttempts: 3, retryBaseDelayMs: 100, retryMaxDelayMs: 2000, ...callOptions });
    });
  return {
    sessions: factory.create(SessionManagementDefinition, channel),
    tasks: factory.create(unCopiedRequests(TaskExecutionDefinition), channel),
    artifacts: factory.create(ArtifactServiceDefinition, channel),
    channel,
    close: () => channel.close(),
  };
}
