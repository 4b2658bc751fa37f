import { createChannel, createClientFactory, Metadata, type Channel, type ChannelCredentials, type ClientMiddleware } from 'nice-grpc';
import { WorkerLifecycleDefinition, type WorkerLifecycleClient } from '../../gen/codegen/v1/worker_lifecycle.js';
import type { Logger } from '../logger.js';
import { metrics } from '../telemetry/metrics.js';
import { endSpan, startClientSpan } from '../telemetry/tracing.js';
import { messageOf } from '../errors.js';

export interface RegistrationOptions {
  coordinatorAddr: string;
  workerId: string;
  maxSessions: number;
  grpcAddress: string;
  metadata: Record<string, string>;
  /** The live session ids, read at send time. */
  sessionIds: () => string[];
  /** COORDINATOR_AUTH_TOKEN, sent as a bearer token. */
  token: string | undefined;
  /** TLS to the coordinator (COORDINATOR_TLS_CA, client certificate); plaintext when undefined. */
  credentials: ChannelCredentials | undefined;
  logger: Logger;
}

/** Each call to the coordinator carries the token and, when tracing, its span's traceparent. */
function coordinatorCalls(token: string | undefined): ClientMiddleware {
  return async function* call(call, options) {
    const traced = startClientSpan(call.method.path);
    const metadata = Metadata(options.metadata);
    if (token) metadata.set('authorization', `Bearer ${token}`);
    for (const [key, value] of Object.entries(traced?.headers ?? {})) metadata.set(key, value);
    try {
      const result = yield* call.next(call.request, { ...options, metadata });
      endSpan(traced?.span);
      return result;
    } catch (err) {
      endSpan(traced?.span, messageOf(err));
      throw err;
    }
  };
}

const DEFAULT_HEARTBEAT_SECONDS = 10;
const MAX_HEARTBEAT_FAILURES = 3;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * The worker's side of WorkerLifecycle: registers (retrying with capped exponential backoff and
 * jitter while the coordinator is down or refuses; the worker keeps serving meanwhile), sends
 * heartbeats at the interval the coordinator asks for, registers again after three failed
 * heartbeats or one not acknowledged, and deregisters on shutdown.
 */
export class Registration {
  private readonly channel: Channel;
  private readonly client: WorkerLifecycleClient;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  /** The interval last agreed; retries while re-registering are no slower than it. */
  private intervalMs = 0;

  constructor(private readonly options: RegistrationOptions) {
    this.channel = createChannel(options.coordinatorAddr, options.credentials);
    this.client = createClientFactory().use(coordinatorCalls(options.token)).create(WorkerLifecycleDefinition, this.channel);
    metrics.registered.set(0);
  }

  start(): void {
    this.loop = this.run();
  }

  /** Stops heartbeats and deregisters with the live sessions, waiting at most 5 s. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    try {
      const response = await this.client.deregisterWorker(
        { workerId: this.options.workerId, sessionIds: this.options.sessionIds() },
        { signal: AbortSignal.timeout(5000) },
      );
      this.options.logger.info('deregistered from the coordinator', { success: response.success, message: response.message });
    } catch (err) {
      this.options.logger.warn('could not deregister from the coordinator', { error: messageOf(err) });
    } finally {
      this.channel.close();
    }
  }

  private async run(): Promise<void> {
    const { signal } = this.stopping;
    while (!signal.aborted) {
      this.intervalMs = await this.register();
      if (signal.aborted) return;
      await this.heartbeat(this.intervalMs);
    }
  }

  /** Registers, retrying until it succeeds or the worker stops; resolves the heartbeat interval in ms. */
  private async register(): Promise<number> {
    const { signal } = this.stopping;
    const log = this.options.logger;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const response = await this.client.registerWorker(
          { workerId: this.options.workerId, maxSessions: this.options.maxSessions, metadata: this.options.metadata, grpcAddress: this.options.grpcAddress },
          { signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]) },
        );
        if (response.success) {
          const seconds = response.heartbeatIntervalSeconds > 0 ? response.heartbeatIntervalSeconds : DEFAULT_HEARTBEAT_SECONDS;
          log.info('registered with the coordinator', { coordinator: this.options.coordinatorAddr, heartbeat_interval_seconds: seconds });
          metrics.registered.set(1);
          return seconds * 1000;
        }
        log.warn('the coordinator refused the registration', { message: response.message });
      } catch (err) {
        if (signal.aborted) break;
        log.warn('could not register with the coordinator; retrying', { coordinator: this.options.coordinatorAddr, error: messageOf(err), attempt });
      }
      const backoff = Math.min(this.intervalMs || BACKOFF_CAP_MS, BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
      await sleep(backoff / 2 + Math.random() * (backoff / 2), signal);
    }
    return 0;
  }

  /** Sends heartbeats until the registration must be renewed or the worker stops. */
  private async heartbeat(intervalMs: number): Promise<void> {
    const { signal } = this.stopping;
    const log = this.options.logger;
    let failures = 0;
    while (!signal.aborted) {
      await sleep(intervalMs, signal);
      if (signal.aborted) return;
      const sessionIds = this.options.sessionIds();
      try {
        const response = await this.client.heartbeat(
          { workerId: this.options.workerId, activeSessions: sessionIds.length, sessionIds },
          { signal: AbortSignal.any([signal, AbortSignal.timeout(Math.max(intervalMs, 1000))]) },
        );
        if (!response.acknowledged) {
          log.warn('heartbeat not acknowledged; registering again', { message: response.message });
          metrics.heartbeatFailures.inc();
          metrics.registered.set(0);
          return;
        }
        failures = 0;
        if (log.isDebugEnabled()) log.debug('heartbeat sent', { active_sessions: sessionIds.length });
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        metrics.heartbeatFailures.inc();
        log.warn('heartbeat failed', { error: messageOf(err), consecutive_failures: failures });
        if (failures >= MAX_HEARTBEAT_FAILURES) {
          metrics.registered.set(0);
          return;
        }
      }
    }
  }
}
