import { mkdir, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError, HelpRequested, isLoopback, loadConfig, splitHostPort, type WorkerConfig } from './config.js';
import { startGrpcServer } from './grpc/server.js';
import { listenRefused, prepareDataDirectory, StartupRefused } from './startupChecks.js';
import { faultOf } from './errors.js';
import { credentials, setLogger, type ChannelCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { createLogger, type Logger } from './logger.js';
import { PythonUnavailableError, resolvePythonInterpreter } from './sandbox/pythonInterpreter.js';
import { SandboxHost, SandboxUnavailableError } from './sandbox/sandboxHost.js';
import { HostLock } from './sandbox/hostLock.js';
import { findOnPath } from './sandbox/hostTools.js';
import { UidRangeError } from './sandbox/uidRange.js';
import { Checkpoints } from './sessions/checkpoints.js';
import { Registration } from './coordinator/registration.js';
import { startIdleReaper } from './sessions/idleReaper.js';
import { SUPPORTED_LANGUAGES } from './sessions/sessionConfig.js';
import { TOOLS } from './tools/index.js';
import { WORKER_VERSION } from './version.js';
import { LocalCheckpointStore, parseS3Url, S3CheckpointStore } from './storage/checkpointStore.js';
import { Artifacts } from './artifacts/artifacts.js';
import { UrlSigner } from './artifacts/urlSigner.js';
import { artifactRoutes } from './http/artifactRequests.js';
import { startHttpServer } from './http/httpServer.js';
import { opsRoutes } from './http/opsRequests.js';
import { serverCredentials } from './grpc/serverCredentials.js';
import { metrics, registry } from './telemetry/metrics.js';
import { startTracing, stopTracing, tracingEnabled } from './telemetry/tracing.js';
import { stateName } from './sessions/session.js';
import { LocalArtifactStore, S3ArtifactStore } from './storage/artifactStore.js';
import { SessionPool } from './sessions/sessionPool.js';
import { LocalWorkspaceStore } from './storage/workspaceStore.js';

/** The longest startup may take before the worker gives up. */
const STARTUP_LIMIT_SECONDS = 120;

/** Time past the grace period a shutdown may take (destroying sessions, closing servers). */
const SHUTDOWN_SLACK_SECONDS = 10;

/** One worker per data directory: a kernel lock taken before anything in it is touched. */
async function lockDataDirectory(dataDir: string): Promise<HostLock> {
  await prepareDataDirectory(dataDir);
  const claim = await HostLock.acquire(join(dataDir, 'worker.lock'), (await findOnPath('flock')) ?? 'flock', `worker data directory ${dataDir}`);
  if (!claim.acquired) {
    const holder = claim.holder ? `worker process ${claim.holder.pid}` : 'another worker process';
    throw new StartupRefused(`WORKER_DATA_DIR ${dataDir} is in use by ${holder}; give each worker its own data directory`);
  }
  return claim.lock;
}

/** WORKER_AUTH_TOKEN, or the content of WORKER_AUTH_TOKEN_FILE (a mounted secret, trailing newline dropped). */
async function readAuthToken(config: WorkerConfig): Promise<string | undefined> {
  if (!config.authTokenFile) return config.authToken;
  const token = (await readFile(config.authTokenFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new StartupRefused(`WORKER_AUTH_TOKEN_FILE ${config.authTokenFile} cannot be read (${err.code ?? err.message})`);
  })).trim();
  if (!token) throw new StartupRefused(`WORKER_AUTH_TOKEN_FILE ${config.authTokenFile} is empty`);
  return token;
}

/** TLS to the coordinator when COORDINATOR_TLS_CA is set (with a client certificate when given). */
function coordinatorCredentials(config: WorkerConfig): ChannelCredentials | undefined {
  if (!config.coordinatorTlsCa) return undefined;
  const read = (file: string | undefined) => (file ? readFileSync(file) : null);
  return credentials.createSsl(read(config.coordinatorTlsCa), read(config.coordinatorTlsKey), read(config.coordinatorTlsCert));
}

/** Sessions by state and the capacity, read when /metrics is scraped. */
function updateSessionGauges(pool: SessionPool, maxSessions: number): void {
  metrics.sessions.reset();
  for (const session of pool.list()) metrics.sessions.inc({ state: stateName(session.state) });
  metrics.capacity.set(maxSessions);
}

async function startWorker(config: WorkerConfig, logger: Logger): Promise<void> {
  const dataLock = await lockDataDirectory(config.dataDir);
  await startTracing('codegen-mcp-worker', { 'service.instance.id': config.workerId, 'service.version': WORKER_VERSION });
  await mkdir(join(config.dataDir, 'sessions'), { recursive: true });
  const interpreter = await resolvePythonInterpreter(config.python);
  if (interpreter.pipVersion === undefined) logger.warn('the host Python has no pip: pkg.install will fail', { python: interpreter.executable });

  const store = new LocalWorkspaceStore(config.dataDir);

  const sandboxHost = await SandboxHost.create({
    mode: config.sandbox,
    allowNetwork: config.allowNetwork,
    interpreter,
    pipIndexUrl: config.pipIndexUrl,
    dataDir: config.dataDir,
    maxProcesses: config.maxProcesses,
    maxTaskOutputBytes: config.maxTaskOutputBytes,
    warmInterpreter: config.warmInterpreter,
    uidBase: config.uidBase,
    logger,
  });
  logger.info('sandbox ready', sandboxHost.describe());
  if (config.sandbox === 'none') logger.warn('WORKER_SANDBOX=none: user code runs WITHOUT isolation and can reach this host; use only for trusted code');

  const pool = new SessionPool({
    maxSessions: config.maxSessions,
    taskHistory: config.taskHistory,
    defaultMemoryMb: config.defaultMemoryMb,
    defaultDiskMb: config.defaultDiskMb,
    spareSessions: config.spareSessions,
    sandboxHost,
    store,
    logger,
  });
  const adoption = await pool.adoptAll();
  if (adoption.adopted + adoption.quarantined > 0) logger.info('sessions of an earlier run adopted', { adopted: adoption.adopted, quarantined: adoption.quarantined, tasks_cut_off: adoption.tasksCutOff });
  pool.startSpares();
  const checkpointStore = config.checkpointStore
    ? new S3CheckpointStore(parseS3Url(config.checkpointStore, config.s3Endpoint), join(config.dataDir, 'checkpoint-scratch'))
    : new LocalCheckpointStore(join(config.dataDir, 'checkpoints'));
  await mkdir(join(config.dataDir, 'checkpoints'), { recursive: true });
  // Checkpoints and uploads an earlier run was writing when it died were never visible: drop them.
  for (const incoming of ['checkpoints/.incoming', 'artifacts/.incoming', 'checkpoint-scratch']) await rm(join(config.dataDir, incoming), { recursive: true, force: true });
  const checkpoints = new Checkpoints({ store: checkpointStore, pool, keepPerSession: config.checkpointsPerSession, logger });
  const signer = await UrlSigner.load(config.urlSecret, config.dataDir);
  await mkdir(join(config.dataDir, 'artifacts'), { recursive: true });
  let publicUrl = config.publicUrl;
  const localArtifacts = new LocalArtifactStore(join(config.dataDir, 'artifacts'), signer, () => publicUrl!, config.downloadUrlTtlSeconds * 1000);
  const artifactStore = config.checkpointStore ? new S3ArtifactStore(parseS3Url(config.checkpointStore, config.s3Endpoint)) : localArtifacts;
  const tls = config.tlsCert && config.tlsKey ? { cert: config.tlsCert, key: config.tlsKey } : undefined;
  let draining = false;
  let serving = false;
  const ops = {
    ready: () => serving && !draining,
    metrics: async () => {
      updateSessionGauges(pool, config.maxSessions);
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
  const http = await startHttpServer(config.httpAddr, [artifactRoutes(localArtifacts, signer), ...opsRoutes(ops)], tls, logger).catch((err: unknown) => {
    throw listenRefused('WORKER_HTTP_ADDR', config.httpAddr, err);
  });
  publicUrl ??= `${tls ? 'https' : 'http'}://127.0.0.1:${http.port}`;
  const artifacts = new Artifacts({ store: artifactStore, pool, maxBytes: config.maxArtifactBytes, uploadTtlMs: config.uploadUrlTtlSeconds * 1000 });
  const sweepArtifacts = setInterval(() => {
    artifactStore.sweep(config.artifactRetentionHours * 3600 * 1000).catch((err: Error) => logger.warn('artifact retention failed', { error: err.message }));
  }, 3600 * 1000);
  sweepArtifacts.unref();
  const stopReaper = startIdleReaper(pool, config.sessionIdleSeconds, logger);
  const grpcListening = startGrpcServer({
    address: config.grpcAddr,
    credentials: serverCredentials(tls ? { ...tls, clientCa: config.tlsClientCa } : undefined),
    authToken: await readAuthToken(config),
    observe: config.observeCalls,
    workerId: config.workerId,
    maxMessageBytes: config.maxMessageBytes,
    checkpoints,
    artifacts,
    tasks: { pool, limits: { maxOutputBytes: config.maxOutputBytes, maxMessageBytes: config.maxMessageBytes }, maxTimeoutSeconds: config.maxTaskTimeoutSeconds },
    logger,
  });
  const grpc = await grpcListening.catch((err: unknown) => {
    throw listenRefused('WORKER_GRPC_ADDR', config.grpcAddr, err);
  });
  const { server, port } = grpc;
  serving = true;
  if (config.insecure && !isLoopback(config.grpcAddr) && !config.authToken && !config.authTokenFile && !config.tlsClientCa) {
    logger.warn('WORKER_INSECURE=true: the gRPC API listens off loopback with no token and no client certificates; anyone who reaches it can run code here', { grpc_address: config.grpcAddr });
  }
  logger.info('worker listening', {
    worker_id: config.workerId,
    grpc_address: config.grpcAddr,
    port,
    http_port: http.port,
    public_url: publicUrl,
    data_dir: config.dataDir,
    checkpoint_store: config.checkpointStore ?? join(config.dataDir, 'checkpoints'),
    python: interpreter.executable,
    python_version: interpreter.version,
    max_sessions: config.maxSessions,
    tls: tls ? (config.tlsClientCa ? 'mTLS' : 'TLS') : 'off',
    auth: config.authToken || config.authTokenFile ? 'bearer token' : 'none',
    tracing: tracingEnabled() ? 'OTLP' : 'off',
  });

  const [grpcHost] = splitHostPort(config.grpcAddr);
  const registration = config.coordinatorAddr
    ? new Registration({
        coordinatorAddr: config.coordinatorAddr,
        workerId: config.workerId,
        maxSessions: config.maxSessions,
        grpcAddress: config.advertiseAddr ?? `${grpcHost === '0.0.0.0' || grpcHost === '::' ? hostname() : grpcHost}:${port}`,
        metadata: { version: WORKER_VERSION, hostname: hostname(), languages: SUPPORTED_LANGUAGES.join(','), python_version: interpreter.version, tools: [...TOOLS.keys()].join(',') },
        sessionIds: () => pool.list().map((s) => s.id),
        token: config.coordinatorAuthToken,
        credentials: coordinatorCredentials(config),
        logger,
      })
    : undefined;
  registration?.start();

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      // A second signal: cancel everything and go now.
      logger.warn('second signal: stopping at once', { signal });
      setTimeout(() => process.exit(1), 2000).unref();
      await pool.suspendAll('worker stopped at once');
      process.exit(1);
    }
    stopping = true;
    // Health and readiness say so at once, while tasks still drain.
    draining = true;
    grpc.setServing(false);
    logger.info('shutting down', { signal, grace_seconds: config.shutdownGraceSeconds });
    // Whatever hangs (a session's files, the coordinator), the worker is gone a little after the grace time.
    setTimeout(() => {
      logger.error('shutdown did not finish in time: exiting now');
      process.exit(1);
    }, (config.shutdownGraceSeconds + SHUTDOWN_SLACK_SECONDS) * 1000).unref();
    stopReaper();
    pool.stopAccepting(); // new sessions and tasks: UNAVAILABLE from now on
    await registration?.stop();
    const idle = await pool.waitForIdle(config.shutdownGraceSeconds * 1000);
    if (!idle) logger.warn('tasks still running after the grace time are cancelled');
    // Sessions stay on disk for the next start to adopt.
    await pool.suspendAll('worker shutting down');
    await sandboxHost.close();
    grpc.endWatches();
    await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, 5000))]);
    server.forceShutdown();
    await http.close();
    await stopTracing();
    dataLock.release();
    logger.info('worker stopped');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void shutdown(signal));
}

async function main(): Promise<void> {
  if (process.argv.slice(2).includes('--version')) {
    process.stdout.write(`${WORKER_VERSION}\n`);
    process.exit(0);
  }
  let config: WorkerConfig;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.message}\n`);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`codegen-worker: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  // grpc-js's own messages (e.g. a bind failure, said again below in terms of its setting) go to the log.
  setLogger({ error: (...args: unknown[]) => logger.debug('grpc-js', { message: args.map(String).join(' ') }) });
  const refuse = (message: string) => {
    logger.error(message);
    process.stderr.write(`codegen-worker: ${message.split('\n')[0]}\n`);
    process.exit(1);
  };
  // Whatever a broken host does (a hung filesystem, a stuck interpreter), startup ends.
  const watchdog = setTimeout(() => refuse(`startup did not finish within ${STARTUP_LIMIT_SECONDS} s; the log says how far it got`), STARTUP_LIMIT_SECONDS * 1000);
  watchdog.unref();
  try {
    await startWorker(config, logger);
    clearTimeout(watchdog);
  } catch (err) {
    const known = [PythonUnavailableError, SandboxUnavailableError, UidRangeError, StartupRefused].some((type) => err instanceof type);
    if (!known) logger.error('cannot start', { error: (err as Error).stack ?? String(err) });
    refuse(known ? (err as Error).message : `cannot start (${faultOf(err)}); the log has the details`);
  }
}

await main();
