import { createChannel, createClientFactory, type Channel, type ChannelOptions } from 'nice-grpc';
import { deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { retryMiddleware } from 'nice-grpc-client-middleware-retry';
import { ArtifactServiceDefinition, type ArtifactServiceClient } from '../../gen/codegen/v1/artifact_service.js';
import { SessionManagementDefinition, type SessionManagementClient } from '../../gen/codegen/v1/session_management.js';
import { TaskExecutionDefinition, type TaskExecutionClient } from '../../gen/codegen/v1/task_execution.js';

export interface WorkerClientOptions {
  /** Largest message either way, bytes (default 64 MiB, the worker's default). */
  maxMessageBytes?: number;
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
 * Typed clients of the worker's three services on one channel, with deadline middleware, and
 * retry middleware that retries by default only the calls the protos mark safe to repeat
 * (GetSessionStatus, GetCapacity, GetTaskStatus, CancelTask).
 */
export function createWorkerClient(address: string, options: WorkerClientOptions = {}): WorkerClient {
  const max = options.maxMessageBytes ?? 64 * 1024 * 1024;
  const channel = createChannel(address, undefined, { 'grpc.max_receive_message_length': max, 'grpc.max_send_message_length': max, ...options.channelOptions });
  const factory = createClientFactory()
    .use(retryMiddleware)
    .use(deadlineMiddleware)
    .use(async function* defaultRetries(call, callOptions) {
      return yield* call.next(call.request, { retryMaxAttempts: 3, retryBaseDelayMs: 100, retryMaxDelayMs: 2000, ...callOptions });
    });
  return {
    sessions: factory.create(SessionManagementDefinition, channel),
    tasks: factory.create(TaskExecutionDefinition, channel),
    artifacts: factory.create(ArtifactServiceDefinition, channel),
    channel,
    close: () => channel.close(),
  };
}
