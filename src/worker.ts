// The worker assembled: its parts made in order, each from the ones before it, and taken down
// in reverse on a signal. main.ts reads the configuration and calls startWorker.
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { isLoopback, splitHostPort } from './address.js';
import { Artifacts } from './artifacts/artifacts.js';
import type { WorkerConfig } from './config.js';
import { Registration } from './coordinator/registration.js';
import { serverCredentials } from './grpc/serverCredentials.js';
import { startGrpcServer, type GrpcServer } from './grpc/server.js';
import { artifactRoutes } from './http/artifactRequests.js';
import { startHttpServer } from './http/httpServer.js';
import { opsRoutes } from './http/opsRequests.js';
import { portLinks, portRoutes, type PortSessions } from './http/portRequests.js';
import type { Logger } from './logger.js';
import { HostLock } from './sandbox/confine/hostLock.js';
import { closeInheritedDescriptors } from './sandbox/process/inheritedDescriptors.js';
import { GoLanguage } from './sandbox/languages/go/goLanguage.js';
import { imageBytes } from './sandbox/confine/diskImage.js';
import { installerSources } from './sandbox/network/installerEndpoints.js';
import { findOnPath } from './sandbox/process/hostTools.js';
import type { Language } from './sandbox/languages/language.js';
import { resolveLanguages, type LanguageOffer } from './sandbox/languages/languages.js';
import { NodeLanguage } from './sandbox/languages/node/nodeLanguage.js';
import { PythonLanguage } from './sandbox/languages/python/pythonLanguage.js';
import { WheelStore } from './sandbox/languages/python/wheelStore.js';
import { PYPA_INSTALLER } from './sandbox/languages/python/wheelInstaller.js';
import { SandboxHost } from './sandbox/host/sandboxHost.js';
import { Checkpoints } from './sessions/checkpoints.js';
import { startIdleReaper } from './sessions/idleReaper.js';
import { stateName } from './sessions/session.js';
import { TreeMemory } from './sessions/treeMemory.js';
import { SessionPool } from './sessions/sessionPool.js';
import { listenRefused, prepareDataDirectory, StartupRefused } from './startupChecks.js';
import { LocalArtifactStore, type ArtifactStore } from './storage/artifactStore.js';
import { LocalCheckpointStore, type CheckpointStore } from './storage/checkpointStore.js';
import { dataDirectory, legacyCaches, unfinishedWrites, type DataDirectory } from './storage/dataDirectory.js';
import { removeTree } from './storage/removeTree.js';
import { CacheDisk, emptyDirectory } from './sandbox/caches/cacheDisk.js';
import { errors, WorkerError } from './errors.js';
import { SessionState } from '../gen/codegen/v1/common.js';
import { parseS3Url, type S3Location } from './storage/s3Location.js';
import { UrlSigner } from './storage/urlSigner.js';
import { startWriteThread } from './storage/fileWriteThread.js';
import { LocalWorkspaceStore } from './storage/workspaceStore.js';
import { DISK_FLOOR_BYTES, DiskBudget } from './storage/diskBudget.js';
import { CallTurns } from './tasks/callTurns.js';
import { PayloadBudget } from './sessions/payloadBudget.js';

/** Bytes of paths a checkpoint's modified_files lists at most. */
const MODIFIED_FILES_BYTES = 8 * 1024 * 1024;
/** fs requests' and replies' bytes the worker holds at once, all sessions together (sessions/payloadBudget.ts). */
const WORKER_PAYLOAD_BYTES = 1024 * 1024 * 1024;
import { metrics, registry } from './telemetry/metrics.js';
import { startTracing, stopTracing, tracingEnabled } from './telemetry/tracing.js';
import { toolNames } from './tools/index.js';
import { WORKER_VERSION } from './version.js';

/** Session states in which port URLs reach the session's servers (not while it is made or ended). */
const PORTS_REACHABLE = new Set([SessionState.SESSION_STATE_READY, SessionState.SESSION_STATE_ACTIVE, SessionState.SESSION_STATE_CHECKPOINTING]);

/** Time past the grace period a shutdown may take (destroying sessions, closing servers). */
const SHUTDOWN_SLACK_SECONDS = 10;

/** One worker per data directory: a kernel lock taken before anything in it is touched. */
async function lockDataDirectory(dirs: DataDirectory): Promise<HostLock> {
  await prepareDataDirectory(dirs.root);
  const claim = await HostLock.acquire(dirs.lock, (await findOnPath('flock')) ?? 'flock', `worker data directory ${dirs.root}`);
  if (!claim.acquired) {
    const holder = claim.holder ? `worker process ${claim.holder.pid}` : 'another worker process';
    throw new StartupRefused(`WORKER_DATA_DIR ${dirs.root} is in use by ${holder}; give each worker its own data directory`);
  }
  return claim.lock;
}

/** WORKER_AUTH_TOKEN, or the content of WORKER_AUTH_TOKEN_FILE (a mounted secret, trailing newline dropped). */
async function readAuthToken(config: WorkerConfig): Promise<string | undefined> {
  if (!config.authTokenFile) return config.authToken;
  const token = (
    await readFile(config.authTokenFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new StartupRefused(`WORKER_AUTH_TOKEN_FILE ${config.authTokenFile} cannot be read (${err.code ?? err.message})`);
    })
  ).trim();
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

/** The data disk's free, committed and available bytes, read when /metrics is scraped. */
function updateDiskGauges(budget: DiskBudget): void {
  const space = budget.space();
  metrics.diskFree.set(space.freeBytes);
  metrics.diskCommitted.set(space.committedBytes);
  metrics.diskAvailable.set(Math.max(0, space.availableBytes));
}

/**
 * The package caches' own disk (sandbox/caches/cacheDisk.ts), reserved before any session's, with the
 * caches an earlier version kept unbounded on the data disk removed first (their room is free
 * before anything is reserved). A size that cannot be reserved stops start-up, naming the setting.
 */
async function openCacheDisk(config: WorkerConfig, dirs: DataDirectory, budget: DiskBudget, logger: Logger): Promise<CacheDisk> {
  for (const name of legacyCaches(await readdir(dirs.root))) await removeTree(join(dirs.root, name));
  const imagesUnavailable = process.getuid?.() === 0 ? undefined : 'it needs a worker running as root';
  const megabytes = config.cacheDiskMb ?? (await defaultCacheDiskMb(dirs.cacheImage, budget));
  return CacheDisk.open({ image: dirs.cacheImage, mountPoint: dirs.caches, megabytes, imagesUnavailable, budget, logger }).catch((err: unknown) => {
    if (!(err instanceof WorkerError)) throw err;
    throw new StartupRefused(
      `WORKER_CACHE_DISK_MB ${megabytes} does not fit on the data disk: ${err.details}; set it lower (0: caches unbounded on the data disk)`,
    );
  });
}

const DEFAULT_CACHE_DISK_MB = 4096;

/**
 * The caches' disk when WORKER_CACHE_DISK_MB is unset: the size of the image an earlier start
 * made (kept: a new size would empty it), else 4096 MB, or a quarter of what the data disk can
 * reserve where that is less (a small disk still starts); under 32 MB, none (unbounded).
 */
async function defaultCacheDiskMb(image: string, budget: DiskBudget): Promise<number> {
  const found = await stat(image).catch(() => undefined);
  if (found?.isFile()) {
    let [low, high] = [1, 16_000_000];
    while (low < high) {
      const mid = Math.floor((low + high) / 2);
      if (imageBytes(mid) < found.size) low = mid + 1;
      else high = mid;
    }
    if (imageBytes(low) === found.size) return low;
  }
  const quarter = Math.floor(budget.space().availableBytes / 4 / (1024 * 1024));
  const megabytes = Math.min(DEFAULT_CACHE_DISK_MB, quarter);
  return megabytes >= 32 ? megabytes : 0;
}

/** What a prune of the caches empties: every cache directory, and the wheel store with what it remembers. */
function cachePruners(dirs: DataDirectory, wheelStore: WheelStore): (() => Promise<void>)[] {
  return [() => wheelStore.clear(), ...[dirs.pipCache, dirs.npmCache, dirs.goCache].map((dir) => () => emptyDirectory(dir))];
}

/** Every language the worker knows, python (the default) first: what each needs of the host is found here once. */
function languageOffers(config: WorkerConfig, dirs: DataDirectory, wheelStore: WheelStore, logger: Logger): LanguageOffer[] {
  return [
    {
      name: 'python',
      resolve: async () => {
        const python = await PythonLanguage.resolve(config.python, {
          pipIndexUrl: config.pipIndexUrl,
          pipCache: dirs.pipCache,
          wheelStore,
        });
        if (python.interpreter.pipVersion === undefined)
          logger.warn('the host Python has no pip: pkg.install will fail', { python: python.interpreter.executable });
        else if (python.interpreter.wheelInstaller === undefined)
          logger.warn(
            "the host Python cannot import PyPA's installer (Debian's python3-installer): pkg.install of a list installed before runs pip again, slower",
            {
              python: python.interpreter.executable,
              installer: PYPA_INSTALLER,
            },
          );
        return python;
      },
    },
    {
      name: 'node',
      resolve: async () => {
        const node = await NodeLanguage.resolve({ npmRegistry: config.npmRegistry, npmCache: dirs.npmCache });
        if (!node.toolchain.npm) logger.warn("the worker's Node has no npm: pkg.install will fail in node sessions", { node: node.toolchain.executable });
        return node;
      },
    },
    { name: 'go', resolve: () => GoLanguage.resolve(config.go, { goProxy: config.goProxy, goCache: dirs.goCache }) },
  ];
}

/** The languages offered (WORKER_LANGUAGES, or each the host has); the log says why any other is not. */
async function offeredLanguages(config: WorkerConfig, dirs: DataDirectory, wheelStore: WheelStore, logger: Logger): Promise<Language[]> {
  const { languages, skipped } = await resolveLanguages(languageOffers(config, dirs, wheelStore, logger), config.languages);
  for (const [name, reason] of Object.entries(skipped)) logger.info(`${name} sessions are not offered: ${reason}`, { language: name });
  return languages;
}

async function startSandbox(
  config: WorkerConfig,
  dirs: DataDirectory,
  languages: Promise<Language[]>,
  disks: { diskBudget: DiskBudget; cacheDisk: CacheDisk },
  logger: Logger,
): Promise<SandboxHost> {
  const sandboxHost = await SandboxHost.create({
    mode: config.sandbox,
    network: {
      defaultMode: config.networkDefault ?? (config.allowNetwork ? 'open' : 'none'),
      maxMode: config.networkMax,
      dnsServers: config.dnsServers,
      installerSources: installerSources(config, process.env),
    },
    caBundle: config.caBundle,
    languages,
    dirs,
    maxProcesses: config.maxProcesses,
    maxTaskOutputBytes: config.maxTaskOutputBytes,
    background: { maxRunning: config.maxBackground, outputBytes: config.processOutputBytes },
    warmInterpreter: config.warmInterpreter,
    quickCgroupMoves: config.quickCgroupMoves,
    uidBase: config.uidBase,
    allowUnenforcedLimits: config.allowUnenforcedLimits,
    diskBudget: disks.diskBudget,
    cacheDisk: disks.cacheDisk,
    cacheScope: config.cacheScope,
    logger,
  });
  logger.info('sandbox ready', sandboxHost.describe());
  for (const { controller } of sandboxHost.unenforcedLimits) metrics.limitsUnenforced.set({ controller }, 1);
  if (sandboxHost.unenforcedLimits.length > 0)
    logger.warn('WORKER_ALLOW_UNENFORCED_LIMITS=true: sessions run WITHOUT some of their limits; use only for development', {
      unenforced: Object.fromEntries(sandboxHost.unenforcedLimits.map((m) => [m.controller, m.why])),
    });
  if (config.sandbox === 'none') logger.warn('WORKER_SANDBOX=none: user code runs WITHOUT isolation and can reach this host; use only for trusted code');
  return sandboxHost;
}

/** The session pool, with the sessions an earlier run left adopted and spares being made. */
async function startSessions(config: WorkerConfig, dirs: DataDirectory, sandboxHost: SandboxHost, logger: Logger): Promise<SessionPool> {
  await mkdir(dirs.sessions, { recursive: true });
  const treeMemory = new TreeMemory();
  const pool = new SessionPool({
    maxSessions: config.maxSessions,
    taskHistory: config.taskHistory,
    defaultMemoryMb: config.defaultMemoryMb,
    defaultCpuPercent: config.defaultCpuPercent,
    defaultDiskMb: config.defaultDiskMb,
    maxDiskMb: config.maxDiskMb,
    spareSessions: config.spareSessions,
    sandboxHost,
    store: new LocalWorkspaceStore(dirs.sessions, dirs.quarantine),
    treeMemory,
    logger,
  });
  const adoption = await pool.adoptAll();
  if (adoption.adopted + adoption.quarantined > 0)
    logger.info('sessions of an earlier run adopted', { adopted: adoption.adopted, quarantined: adoption.quarantined, tasks_cut_off: adoption.tasksCutOff });
  pool.startSpares();
  return pool;
}

interface Stores {
  checkpoints: Checkpoints;
  signer: UrlSigner;
  /** Serves the upload and download URLs of the local store (and uploads to it). */
  localArtifacts: LocalArtifactStore;
  /** Where artifacts are kept: the local store, or S3 beside the checkpoints. */
  artifactStore: ArtifactStore;
  /** The base of the worker's own URLs, known once the HTTP server listens. */
  publicUrl: { value: string | undefined };
}

async function openStores(config: WorkerConfig, dirs: DataDirectory, pool: SessionPool, diskBudget: DiskBudget, logger: Logger): Promise<Stores> {
  const s3 = config.checkpointStore ? parseS3Url(config.checkpointStore, config.s3Endpoint) : undefined;
  await Promise.all([mkdir(dirs.checkpoints, { recursive: true }), mkdir(dirs.artifacts, { recursive: true })]);
  for (const unfinished of unfinishedWrites(dirs)) await rm(unfinished, { recursive: true, force: true });
  const remote = s3 ? await openS3Stores(s3, dirs) : undefined;
  const checkpointStore = remote?.checkpoints ?? new LocalCheckpointStore(dirs.checkpoints);
  const checkpoints = new Checkpoints({
    store: checkpointStore,
    pool,
    keepPerSession: config.checkpointsPerSession,
    // A quarter of a message at most: a reply carries other fields, and a restore's reply the metadata too.
    modifiedFilesBytes: Math.min(MODIFIED_FILES_BYTES, Math.floor(config.maxMessageBytes / 4)),
    diskBudget,
    treeMemory: pool.treeMemory,
    logger,
  });
  const signer = await UrlSigner.load(config.urlSecret, dirs.urlSecret);
  const publicUrl = { value: config.publicUrl };
  const localArtifacts = new LocalArtifactStore(dirs.artifacts, signer, () => publicUrl.value!, config.downloadUrlTtlSeconds * 1000);
  const artifactStore = remote?.artifacts ?? localArtifacts;
  return { checkpoints, signer, localArtifacts, artifactStore, publicUrl };
}

/** The S3 stores, their SDK loaded only here: most workers never use it, and loading it is much of start-up. */
async function openS3Stores(location: S3Location, dirs: DataDirectory): Promise<{ checkpoints: CheckpointStore; artifacts: ArtifactStore }> {
  const [{ S3CheckpointStore }, { S3ArtifactStore }] = await Promise.all([import('./storage/s3CheckpointStore.js'), import('./storage/s3ArtifactStore.js')]);
  return { checkpoints: new S3CheckpointStore(location, dirs.checkpointScratch), artifacts: new S3ArtifactStore(location) };
}

/** Drops artifacts past WORKER_ARTIFACT_RETENTION_HOURS, hourly. */
function sweepArtifactsHourly(store: ArtifactStore, retentionHours: number, logger: Logger): void {
  const sweep = setInterval(() => {
    store.sweep(retentionHours * 3600 * 1000).catch((err: Error) => logger.warn('artifact retention failed', { error: err.message }));
  }, 3600 * 1000);
  sweep.unref();
}

/** What the coordinator is told of each language (interpreter, versions), as one metadata map. */
function languageFacts(languages: readonly Language[]): Record<string, string> {
  return Object.assign({}, ...languages.map((l) => l.describe())) as Record<string, string>;
}

function startRegistration(
  config: WorkerConfig,
  port: number,
  host: { languages: readonly Language[]; networkModes: readonly string[] },
  pool: SessionPool,
  logger: Logger,
): Registration | undefined {
  const languages = host.languages;
  if (!config.coordinatorAddr) return undefined;
  const [grpcHost] = splitHostPort(config.grpcAddr);
  const registration = new Registration({
    coordinatorAddr: config.coordinatorAddr,
    workerId: config.workerId,
    maxSessions: config.maxSessions,
    grpcAddress: config.advertiseAddr ?? `${grpcHost === '0.0.0.0' || grpcHost === '::' ? hostname() : grpcHost}:${port}`,
    metadata: {
      version: WORKER_VERSION,
      hostname: hostname(),
      ...languageFacts(languages),
      languages: languages.map((l) => l.name).join(','),
      tools: toolNames(languages.map((l) => l.name)).join(','),
      // Which sessions it can take: a coordinator places a session asking for a network where it is offered.
      network_modes: host.networkModes.join(','),
    },
    sessionIds: () => pool.list().map((s) => s.id),
    token: config.coordinatorAuthToken,
    credentials: coordinatorCredentials(config),
    logger,
  });
  registration.start();
  return registration;
}

/** The line an operator looks for: where the worker listens and how it is set up. */
function logListening(
  config: WorkerConfig,
  where: { grpcPort: number; httpPort: number; publicUrl: string | undefined; checkpointStore: string; languages: Language[]; tls: string },
  logger: Logger,
): void {
  logger.info('worker listening', {
    worker_id: config.workerId,
    grpc_address: config.grpcAddr,
    port: where.grpcPort,
    http_port: where.httpPort,
    public_url: where.publicUrl,
    data_dir: config.dataDir,
    checkpoint_store: where.checkpointStore,
    languages: where.languages.map((l) => l.name).join(','),
    ...languageFacts(where.languages),
    max_sessions: config.maxSessions,
    tls: where.tls,
    auth: config.authToken || config.authTokenFile ? 'bearer token' : 'none',
    tracing: tracingEnabled() ? 'OTLP' : 'off',
  });
}

/** What a running worker is made of, as its shutdown takes it apart. */
interface RunningWorker {
  config: WorkerConfig;
  logger: Logger;
  dataLock: HostLock;
  sandboxHost: SandboxHost;
  cacheDisk: CacheDisk;
  pool: SessionPool;
  grpc: GrpcServer;
  http: { close(): Promise<void> };
  registration: Registration | undefined;
  stopReaper: () => void;
  /** Marks the worker draining: readiness fails from then on. */
  drain(): void;
}

/**
 * SIGTERM and SIGINT: stop taking work, let tasks finish within the grace time, then suspend
 * every session (kept on disk for the next start) and exit. A second signal suspends at once.
 */
function stopOnSignals(worker: RunningWorker): void {
  const { config, logger, pool } = worker;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      logger.warn('second signal: stopping at once', { signal });
      setTimeout(() => process.exit(1), 2000).unref();
      await pool.suspendAll('worker stopped at once');
      process.exit(1);
    }
    stopping = true;
    // Health and readiness say so at once, while tasks still drain.
    worker.drain();
    worker.grpc.setServing(false);
    logger.info('shutting down', { signal, grace_seconds: config.shutdownGraceSeconds });
    // Whatever hangs (a session's files, the coordinator), the worker is gone a little after the grace time.
    setTimeout(
      () => {
        logger.error('shutdown did not finish in time: exiting now');
        process.exit(1);
      },
      (config.shutdownGraceSeconds + SHUTDOWN_SLACK_SECONDS) * 1000,
    ).unref();
    worker.stopReaper();
    pool.stopAccepting(); // new sessions and tasks: UNAVAILABLE from now on
    await worker.registration?.stop();
    if (!(await pool.waitForIdle(config.shutdownGraceSeconds * 1000))) logger.warn('tasks still running after the grace time are cancelled');
    await pool.suspendAll('worker shutting down');
    await worker.sandboxHost.close();
    await worker.cacheDisk.close();
    worker.grpc.endWatches();
    await Promise.race([worker.grpc.server.shutdown(), delay(5000)]);
    worker.grpc.server.forceShutdown();
    await worker.http.close();
    await stopTracing();
    worker.dataLock.release();
    logger.info('worker stopped');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void shutdown(signal));
}

/** Longest start-up waits for its first spare session before it serves. */
const FIRST_SPARE_WAIT_MS = 2000;

/** Starts the worker: the data directory locked, the sandbox checked, sessions adopted, then serving. */
export async function startWorker(config: WorkerConfig, logger: Logger): Promise<void> {
  const inherited = closeInheritedDescriptors();
  if (inherited.length > 0) logger.info('closed descriptors the worker inherited, so no sandbox inherits them', { descriptors: inherited });
  const dirs = dataDirectory(config.dataDir);
  const dataLock = await lockDataDirectory(dirs);
  startWriteThread(); // ready by the first record written
  await startTracing('codegen-mcp-worker', { 'service.instance.id': config.workerId, 'service.version': WORKER_VERSION });
  // What sessions' disks, the caches' disk and checkpoints may take of the data disk (storage/diskBudget.ts).
  const diskBudget = new DiskBudget({
    path: dirs.root,
    imageDirs: [dirs.sessions],
    image: 'disk.img',
    files: [dirs.cacheImage],
    overcommit: config.diskOvercommit,
    floorBytes: DISK_FLOOR_BYTES,
  });
  const cacheDisk = await openCacheDisk(config, dirs, diskBudget, logger);
  try {
    await startServing(config, { dirs, dataLock, diskBudget, cacheDisk }, logger);
  } catch (err) {
    // A start-up refused past this point leaves no mount behind (a restart would mount it again anyway).
    await cacheDisk.close().catch(() => undefined);
    throw err;
  }
}

/** The rest of start-up, on the locked data directory with the caches' disk mounted: languages, sandbox, sessions, servers. */
async function startServing(
  config: WorkerConfig,
  base: { dirs: DataDirectory; dataLock: HostLock; diskBudget: DiskBudget; cacheDisk: CacheDisk },
  logger: Logger,
): Promise<void> {
  const { dirs, dataLock, diskBudget, cacheDisk } = base;
  const wheelStore = await WheelStore.open(dirs.wheelStore);
  cacheDisk.pruneWith(cachePruners(dirs, wheelStore));
  const resolving = offeredLanguages(config, dirs, wheelStore, logger);
  const sandboxHost = await startSandbox(config, dirs, resolving, { diskBudget, cacheDisk }, logger);
  const languages = await resolving;
  // A start-up refused from here on gives back what it made: spares' and sessions' disks, the
  // sessions' networks (namespaces, the nftables table), the HTTP server; undone last first.
  const undo: (() => Promise<unknown>)[] = [() => sandboxHost.close()];
  const refused = async (err: unknown): Promise<never> => {
    for (const step of undo.reverse()) await step().catch(() => undefined);
    throw err;
  };
  const pool = await startSessions(config, dirs, sandboxHost, logger).catch(refused);
  undo.push(() => pool.suspendAll('worker start-up refused'));
  const stores = await openStores(config, dirs, pool, diskBudget, logger).catch(refused);

  const tls = config.tlsCert && config.tlsKey ? { cert: config.tlsCert, key: config.tlsKey } : undefined;
  const health = { serving: false, draining: false };
  const ops = {
    ready: () => health.serving && !health.draining,
    metrics: async () => {
      updateSessionGauges(pool, config.maxSessions);
      updateDiskGauges(diskBudget);
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
  const ports: PortSessions = {
    connect: (sessionId, port) => {
      const session = pool.get(sessionId);
      // Its tasks running or a checkpoint being taken, its servers are up all the same.
      if (!PORTS_REACHABLE.has(session.state)) throw errors.invalidSessionState(sessionId, SessionState[session.state], 'reach its ports');
      return session.sandbox.connectPort(port);
    },
  };
  const routes = [artifactRoutes(stores.localArtifacts, stores.signer, diskBudget), portRoutes(stores.signer, ports, logger), ...opsRoutes(ops)];
  const http = await startHttpServer(config.httpAddr, routes, { tls, maxConnections: config.httpMaxConnections }, logger).catch((err: unknown) =>
    refused(listenRefused('WORKER_HTTP_ADDR', config.httpAddr, err)),
  );
  undo.push(() => http.close());
  stores.publicUrl.value ??= `${tls ? 'https' : 'http'}://127.0.0.1:${http.port}`;
  const artifacts = new Artifacts({ store: stores.artifactStore, pool, maxBytes: config.maxArtifactBytes, uploadTtlMs: config.uploadUrlTtlSeconds * 1000 });
  sweepArtifactsHourly(stores.artifactStore, config.artifactRetentionHours, logger);
  const stopReaper = startIdleReaper(pool, config.sessionIdleSeconds, logger);
  // The first CreateSession takes a spare: made on the spot beside the first spares being made, it
  // took 110 to 250 ms. Start-up goes on meanwhile; the wait is bounded.
  await Promise.race([pool.firstSpareReady(), delay(FIRST_SPARE_WAIT_MS, undefined, { ref: false })]);
  const grpc = await startGrpcServer({
    address: config.grpcAddr,
    credentials: serverCredentials(tls ? { ...tls, clientCa: config.tlsClientCa } : undefined),
    authToken: await readAuthToken(config),
    observe: config.observeCalls,
    workerId: config.workerId,
    maxMessageBytes: config.maxMessageBytes,
    bulkIntakeBytesPerSecond: config.bulkIntakeBytesPerSecond,
    checkpoints: stores.checkpoints,
    artifacts,
    sessions: pool,
    tasks: {
      pool,
      limits: { maxOutputBytes: config.maxOutputBytes, maxMessageBytes: config.maxMessageBytes },
      maxTimeoutSeconds: config.maxTaskTimeoutSeconds,
      payloads: new PayloadBudget(WORKER_PAYLOAD_BYTES),
      turns: new CallTurns(),
      portLinks: portLinks(stores.signer, () => stores.publicUrl.value!),
    },
    logger,
  }).catch((err: unknown) => refused(listenRefused('WORKER_GRPC_ADDR', config.grpcAddr, err)));
  health.serving = true;
  sandboxHost.checkOtherLanguages();
  if (config.insecure && !isLoopback(config.grpcAddr) && !config.authToken && !config.authTokenFile && !config.tlsClientCa) {
    logger.warn('WORKER_INSECURE=true: the gRPC API listens off loopback with no token and no client certificates; anyone who reaches it can run code here', {
      grpc_address: config.grpcAddr,
    });
  }
  logListening(
    config,
    {
      grpcPort: grpc.port,
      httpPort: http.port,
      publicUrl: stores.publicUrl.value,
      checkpointStore: config.checkpointStore ?? dirs.checkpoints,
      languages,
      tls: tls ? (config.tlsClientCa ? 'mTLS' : 'TLS') : 'off',
    },
    logger,
  );
  const registration = startRegistration(config, grpc.port, { languages, networkModes: sandboxHost.networkModes }, pool, logger);
  stopOnSignals({ config, logger, dataLock, sandboxHost, cacheDisk, pool, grpc, http, registration, stopReaper, drain: () => (health.draining = true) });
}
