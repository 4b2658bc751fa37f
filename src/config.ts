import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isLoopback } from './address.js';
import { messageOf } from './errors.js';
import { LANGUAGES, type LanguageName } from './sessions/sessionConfig.js';
import { NETWORK_MODES, type NetworkModeName } from './sandbox/network/networkPolicy.js';

/** The worker's configuration, read and validated once at startup. */
export interface WorkerConfig {
  workerId: string;
  grpcAddr: string;
  httpAddr: string;
  /** WORKER_HTTP_MAX_CONNECTIONS: each one a descriptor of the worker's, so no client can take them all. */
  httpMaxConnections: number;
  publicUrl: string | undefined;
  advertiseAddr: string | undefined;
  dataDir: string;
  maxSessions: number;
  coordinatorAddr: string | undefined;
  pipIndexUrl: string | undefined;
  /** WORKER_NPM_REGISTRY: the registry pkg.install uses in node sessions. */
  npmRegistry: string;
  maxMessageBytes: number;
  /** WORKER_BULK_INTAKE_MB_PER_S, in bytes: how fast large requests are taken in, and large replies sent, while other calls are served (0: unpaced). */
  bulkIntakeBytesPerSecond: number;
  logLevel: string;
  sessionIdleSeconds: number;
  maxTaskTimeoutSeconds: number;
  maxOutputBytes: number;
  taskHistory: number;
  python: string;
  /** WORKER_GOPROXY: the module proxies pkg.install fetches Go modules from (GOPROXY syntax, no `direct`). */
  goProxy: string;
  /** WORKER_GO: the go command Go sessions are based on. */
  go: string;
  /** WORKER_LANGUAGES; undefined: every language whose toolchain the host has. */
  languages: LanguageName[] | undefined;
  sandbox: 'bwrap' | 'none';
  allowNetwork: boolean;
  /** WORKER_NETWORK_DEFAULT; unset: none (open where WORKER_ALLOW_NETWORK is true). */
  networkDefault: NetworkModeName | undefined;
  networkMax: NetworkModeName;
  dnsServers: string[];
  /** WORKER_CA_BUNDLE: a PEM file of CAs the fetching steps and networked session code trust besides the system's. */
  caBundle: string | undefined;
  maxProcesses: number;
  maxTaskOutputBytes: number;
  maxBackground: number;
  processOutputBytes: number;
  defaultMemoryMb: number;
  defaultCpuPercent: number;
  warmInterpreter: boolean;
  quickCgroupMoves: boolean;
  spareSessions: number;
  checkpointStore: string | undefined;
  s3Endpoint: string | undefined;
  checkpointsPerSession: number;
  urlSecret: string | undefined;
  downloadUrlTtlSeconds: number;
  uploadUrlTtlSeconds: number;
  maxArtifactBytes: number;
  artifactRetentionHours: number;
  shutdownGraceSeconds: number;
  uidBase: number | undefined;
  authToken: string | undefined;
  authTokenFile: string | undefined;
  insecure: boolean;
  allowUnenforcedLimits: boolean;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tlsClientCa: string | undefined;
  coordinatorAuthToken: string | undefined;
  coordinatorTlsCa: string | undefined;
  coordinatorTlsCert: string | undefined;
  coordinatorTlsKey: string | undefined;
  observeCalls: boolean;
  defaultDiskMb: number;
  maxDiskMb: number;
  diskOvercommit: number;
  cacheScope: 'shared' | 'user';
  /** WORKER_CACHE_DISK_MB: the package caches' own disk, reserved on the data disk (0: unbounded there). */
  /** WORKER_CACHE_DISK_MB; unset: 4096, or a quarter of what the data disk can reserve if less (worker.ts). */
  cacheDiskMb: number | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** `--help` was asked for: print the usage and exit 0. */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
}

type Parser<T> = (raw: string, name: string) => T;

const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'];

const text: Parser<string> = (raw, name) => {
  if (raw.trim() === '') throw new ConfigError(`${name} must not be empty`);
  return raw.trim();
};

const integer =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got '${raw}'`);
    const value = Number(raw);
    if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
    return value;
  };

const decimal =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    if (!/^\d+(\.\d+)?$/.test(raw.trim())) throw new ConfigError(`${name} must be a number, got '${raw}'`);
    const value = Number(raw);
    if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
    return value;
  };

/** Uid ranges are whole blocks of 100000, so two workers' ranges either coincide (and one is refused) or are disjoint. */
const uidBase: Parser<number> = (raw, name) => {
  const value = integer(100_000, 4_294_800_000)(raw, name);
  if (value % 100_000 !== 0) throw new ConfigError(`${name} must be a multiple of 100000 (uid ranges are whole blocks), got ${value}`);
  return value;
};

const hostPort: Parser<string> = (raw, name) => {
  const match = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d+)$/.exec(raw.trim());
  if (!match || Number(match[2]) > 65535) throw new ConfigError(`${name} must be host:port (port 0-65535), got '${raw}'`);
  return raw.trim();
};

const url =
  (protocols: string[]): Parser<string> =>
  (raw, name) => {
    let parsed: URL;
    try {
      parsed = new URL(raw.trim());
    } catch {
      throw new ConfigError(`${name} must be a URL, got '${raw}'`);
    }
    if (!protocols.includes(parsed.protocol)) throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got '${raw}'`);
    return raw.trim();
  };

const bool: Parser<boolean> = (raw, name) => {
  const value = raw.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(value)) return true;
  if (['false', '0', 'no'].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false, got '${raw}'`);
};

const oneOf =
  (choices: string[]): Parser<string> =>
  (raw, name) => {
    if (!choices.includes(raw.trim())) throw new ConfigError(`${name} must be one of ${choices.join(', ')}, got '${raw}'`);
    return raw.trim();
  };

/**
 * GOPROXY's syntax (proxy URLs separated by `,` or `|`), proxies only: `direct` would have the
 * fetch step run version control tools, `off` would fetch nothing.
 */
const goProxyList: Parser<string> = (raw, name) => {
  const value = raw.trim();
  for (const entry of value.split(/[,|]/)) {
    if (entry === 'direct' || entry === 'off') throw new ConfigError(`${name}: '${entry}' is not allowed; name module proxies (http, https or file URLs) only`);
    url(['http:', 'https:', 'file:'])(entry, name);
  }
  return value;
};

/** A comma-separated list of session languages, each named once. */
const languageList: Parser<LanguageName[]> = (raw, name) => {
  const names = raw.split(',').map((n) => n.trim());
  for (const n of names)
    if (!(LANGUAGES as readonly string[]).includes(n)) throw new ConfigError(`${name}: '${n}' is not a language; choose from ${LANGUAGES.join(', ')}`);
  if (new Set(names).size !== names.length) throw new ConfigError(`${name} names a language twice: '${raw}'`);
  return names as LanguageName[];
};

interface Setting<T> {
  env: string;
  help: string;
  parse: Parser<T>;
  fallback: () => T;
}

function setting<T>(env: string, help: string, parse: Parser<T>, fallback: () => T): Setting<T> {
  return { env, help, parse, fallback };
}

const none = () => undefined;

/** Every setting: its environment variable, its flag (derived from the variable) and its default. */
const SETTINGS = {
  workerId: setting('WORKER_ID', 'id given to clients and the coordinator', text, () => `worker-${hostname()}`),
  grpcAddr: setting(
    'WORKER_GRPC_ADDR',
    'gRPC listen address (port 0: any free port); off loopback it needs a token or mTLS',
    hostPort,
    () => '127.0.0.1:50052',
  ),
  httpAddr: setting('WORKER_HTTP_ADDR', 'HTTP listen address (artifacts, health, metrics)', hostPort, () => '127.0.0.1:50053'),
  httpMaxConnections: setting(
    'WORKER_HTTP_MAX_CONNECTIONS',
    'HTTP connections open at once; those past it are closed as they come',
    integer(1, 1_000_000),
    () => 1024,
  ),
  publicUrl: setting<string | undefined>('WORKER_PUBLIC_URL', 'base of the upload URLs handed out', url(['http:', 'https:']), none),
  advertiseAddr: setting<string | undefined>('WORKER_ADVERTISE_ADDR', 'address sent to the coordinator', hostPort, none),
  dataDir: setting(
    'WORKER_DATA_DIR',
    'workspaces, checkpoints, artifacts',
    (raw, name) => resolve(text(raw, name)),
    () => resolve('.worker-data'),
  ),
  maxSessions: setting('WORKER_MAX_SESSIONS', 'capacity: sessions at once', integer(1, 100_000), () => 10),
  coordinatorAddr: setting<string | undefined>('COORDINATOR_ADDR', 'coordinator address; unset runs standalone', hostPort, none),
  pipIndexUrl: setting<string | undefined>('WORKER_PIP_INDEX_URL', 'package index for pkg.install', url(['http:', 'https:', 'file:']), none),
  npmRegistry: setting('WORKER_NPM_REGISTRY', 'npm registry for pkg.install in node sessions', url(['http:', 'https:']), () => 'https://registry.npmjs.org/'),
  maxMessageBytes: setting(
    'WORKER_MAX_MESSAGE_MB',
    'largest gRPC message either way, in MB',
    (raw, name) => integer(1, 2047)(raw, name) * 1024 * 1024,
    () => 64 * 1024 * 1024,
  ),
  bulkIntakeBytesPerSecond: setting(
    'WORKER_BULK_INTAKE_MB_PER_S',
    'how fast large requests and replies (1 MB or more) are taken in and sent, together, while other calls are served (0: as fast as they come)',
    (raw, name) => integer(0, 100_000)(raw, name) * 1024 * 1024,
    () => 50 * 1024 * 1024,
  ),
  logLevel: setting('WORKER_LOG_LEVEL', 'log level', oneOf(LOG_LEVELS), () => 'info'),
  sessionIdleSeconds: setting('WORKER_SESSION_IDLE_SECONDS', 'destroy sessions idle this long (0: never)', integer(0, 10_000_000), () => 3600),
  maxTaskTimeoutSeconds: setting('WORKER_MAX_TASK_TIMEOUT_SECONDS', 'longest any task may run', integer(1, 10_000_000), () => 300),
  maxOutputBytes: setting('WORKER_MAX_OUTPUT_BYTES', 'stdout/stderr kept in a task result, per stream', integer(1024, 1024 * 1024 * 1024), () => 1024 * 1024),
  taskHistory: setting('WORKER_TASK_HISTORY', 'finished tasks kept queryable per session', integer(1, 100_000), () => 100),
  python: setting('WORKER_PYTHON', 'Python interpreter sessions are based on', text, () => 'python3'),
  goProxy: setting(
    'WORKER_GOPROXY',
    'Go module proxies pkg.install fetches from (GOPROXY syntax, proxies only)',
    goProxyList,
    () => 'https://proxy.golang.org',
  ),
  go: setting('WORKER_GO', 'go command Go sessions are based on', text, () => 'go'),
  languages: setting<LanguageName[] | undefined>(
    'WORKER_LANGUAGES',
    `session languages offered, comma-separated (${LANGUAGES.join(', ')}; unset: each one whose toolchain this host has)`,
    languageList,
    none,
  ),
  sandbox: setting(
    'WORKER_SANDBOX',
    'bwrap (isolate user code) or none (no isolation: trusted code only)',
    oneOf(['bwrap', 'none']) as Parser<'bwrap' | 'none'>,
    () => 'bwrap' as const,
  ),
  allowNetwork: setting(
    'WORKER_ALLOW_NETWORK',
    'the older switch: true is WORKER_NETWORK_DEFAULT=open (sessions still get their own namespace, never the host network)',
    bool,
    () => false,
  ),
  networkDefault: setting(
    'WORKER_NETWORK_DEFAULT',
    'the network of sessions that ask for none: none, allow_list (an empty list: nothing) or open (unset: none, or open with WORKER_ALLOW_NETWORK)',
    oneOf([...NETWORK_MODES]) as Parser<NetworkModeName | undefined>,
    none,
  ),
  networkMax: setting(
    'WORKER_NETWORK_MAX',
    'the widest network mode a session may ask for: none, allow_list or open (wider: PERMISSION_DENIED)',
    oneOf([...NETWORK_MODES]) as Parser<NetworkModeName>,
    () => 'open' as const,
  ),
  caBundle: setting<string | undefined>(
    'WORKER_CA_BUNDLE',
    "a PEM file of CAs (a TLS-intercepting proxy's) that pkg.install's fetching steps and session code with a network trust besides the system's",
    (raw, name) => resolve(text(raw, name)),
    none,
  ),
  dnsServers: setting(
    'WORKER_DNS_SERVERS',
    "the resolvers the sessions' DNS gate asks, comma-separated (unset: /etc/resolv.conf's)",
    (raw) =>
      raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    () => [],
  ),
  maxProcesses: setting('WORKER_MAX_PROCESSES', 'processes one session may run at once', integer(8, 100_000), () => 256),
  maxTaskOutputBytes: setting(
    'WORKER_MAX_TASK_OUTPUT_MB',
    'output a task may print before it is killed, in MB',
    (raw, name) => integer(1, 100_000)(raw, name) * 1024 * 1024,
    () => 64 * 1024 * 1024,
  ),
  maxBackground: setting('WORKER_MAX_BACKGROUND', 'background processes (run.shell background) one session may run at once', integer(0, 1000), () => 8),
  processOutputBytes: setting(
    'WORKER_PROCESS_OUTPUT_KB',
    'output kept per background process for proc.output, in KB (the oldest goes first)',
    (raw, name) => integer(1, 1_000_000)(raw, name) * 1024,
    () => 256 * 1024,
  ),
  checkpointStore: setting<string | undefined>('WORKER_CHECKPOINT_STORE', 's3://bucket/prefix for checkpoints (unset: the data directory)', url(['s3:']), none),
  s3Endpoint: setting<string | undefined>(
    'WORKER_S3_ENDPOINT',
    'endpoint of an S3-compatible store (credentials: the usual AWS_* variables)',
    url(['http:', 'https:']),
    none,
  ),
  checkpointsPerSession: setting('WORKER_CHECKPOINTS_PER_SESSION', 'newest checkpoints kept per session', integer(1, 100_000), () => 10),
  urlSecret: setting<string | undefined>(
    'WORKER_URL_SECRET',
    'HMAC secret for upload/download URLs (unset: generated once into the data directory)',
    text,
    none,
  ),
  uploadUrlTtlSeconds: setting('WORKER_UPLOAD_URL_TTL_SECONDS', 'how long an upload URL stays valid', integer(1, 7 * 24 * 3600), () => 3600),
  downloadUrlTtlSeconds: setting(
    'WORKER_DOWNLOAD_URL_TTL_SECONDS',
    'how long an artifact download URL stays valid',
    integer(1, 365 * 24 * 3600),
    () => 7 * 24 * 3600,
  ),
  maxArtifactBytes: setting(
    'WORKER_MAX_ARTIFACT_MB',
    'largest artifact, in MB',
    (raw, name) => integer(1, 1_000_000)(raw, name) * 1024 * 1024,
    () => 1024 * 1024 * 1024,
  ),
  artifactRetentionHours: setting(
    'WORKER_ARTIFACT_RETENTION_HOURS',
    'artifacts are kept this long, their sessions gone or not',
    integer(1, 100_000),
    () => 7 * 24,
  ),
  shutdownGraceSeconds: setting('WORKER_SHUTDOWN_GRACE_SECONDS', 'on SIGTERM/SIGINT, how long running tasks may finish', integer(0, 3600), () => 30),
  spareSessions: setting('WORKER_SPARE_SESSIONS', 'sessions kept made ahead, so CreateSession is quick (0: none)', integer(0, 1000), () => 8),
  warmInterpreter: setting(
    'WORKER_WARM_INTERPRETER',
    'fork every run call (run.python, run.node, run.go, run.shell) from a warm process kept in each session',
    bool,
    () => true,
  ),
  quickCgroupMoves: setting(
    'WORKER_QUICK_CGROUP_MOVES',
    'mount a cgroup hierarchy of no controllers with favordynmods (a host-wide kernel mode: moving a process into a cgroup is quick, forks and exits a little slower)',
    bool,
    () => true,
  ),
  uidBase: setting<number | undefined>(
    'WORKER_UID_BASE',
    "first host uid of this worker's range of 100000 (a multiple of 100000; unset: claim a free range)",
    uidBase,
    none,
  ),
  authToken: setting<string | undefined>('WORKER_AUTH_TOKEN', 'every gRPC call must carry authorization: Bearer <token> (health checks exempt)', text, none),
  authTokenFile: setting<string | undefined>('WORKER_AUTH_TOKEN_FILE', 'a file holding WORKER_AUTH_TOKEN (a mounted secret)', text, none),
  allowUnenforcedLimits: setting(
    'WORKER_ALLOW_UNENFORCED_LIMITS',
    'start even where the memory, CPU or process limits cannot be enforced (no root, a controller not delegated): development only; warns on every start',
    bool,
    () => false,
  ),
  insecure: setting('WORKER_INSECURE', 'allow listening off loopback with neither a token nor mTLS (warns)', bool, () => false),
  tlsCert: setting<string | undefined>('WORKER_TLS_CERT', 'PEM certificate (chain): serve gRPC and HTTP over TLS; re-read when it changes', text, none),
  tlsKey: setting<string | undefined>('WORKER_TLS_KEY', 'PEM private key of WORKER_TLS_CERT', text, none),
  tlsClientCa: setting<string | undefined>('WORKER_TLS_CLIENT_CA', 'PEM CA bundle: require client certificates it signed (mTLS)', text, none),
  coordinatorAuthToken: setting<string | undefined>('COORDINATOR_AUTH_TOKEN', 'bearer token sent to the coordinator', text, none),
  coordinatorTlsCa: setting<string | undefined>('COORDINATOR_TLS_CA', 'PEM CA bundle: reach the coordinator over TLS, trusting it', text, none),
  coordinatorTlsCert: setting<string | undefined>('COORDINATOR_TLS_CERT', 'PEM client certificate for the coordinator (mTLS)', text, none),
  coordinatorTlsKey: setting<string | undefined>('COORDINATOR_TLS_KEY', 'PEM private key of COORDINATOR_TLS_CERT', text, none),
  observeCalls: setting(
    'WORKER_OBSERVE_CALLS',
    'count every gRPC call for /metrics and log it (the access log; off: task and process metrics only)',
    bool,
    () => true,
  ),
  defaultDiskMb: setting(
    'WORKER_DEFAULT_DISK_MB',
    'disk limit (workspace and environment) of sessions that set none, in MB (0: none)',
    integer(0, 100_000_000),
    () => 10240,
  ),
  maxDiskMb: setting(
    'WORKER_MAX_DISK_MB',
    'the largest config.limits.max_disk_mb a session may ask for, in MB (more: INVALID_ARGUMENT)',
    integer(1, 16_000_000),
    () => 1_048_576,
  ),
  diskOvercommit: setting(
    'WORKER_DISK_OVERCOMMIT',
    "how many times the data disk's free space sessions' disk limits may add up to (1: each limit is a reservation; more: a session filling its disk may fill the host's)",
    decimal(0.01, 1000),
    () => 1,
  ),
  cacheScope: setting(
    'WORKER_CACHE_SCOPE',
    "shared: pip's, npm's and go's caches and the wheel store serve every session (a session can tell, by speed and output, that another installed the same); user: each user_id its own",
    oneOf(['shared', 'user']) as Parser<'shared' | 'user'>,
    () => 'shared' as const,
  ),
  cacheDiskMb: setting(
    'WORKER_CACHE_DISK_MB',
    "size in MB of the package caches' own disk (pip's, npm's, go's, the wheel store), reserved on the data disk like a session's and emptied when full (0: the caches on the data disk, unbounded; unset: the size an earlier start chose, else 4096 or a quarter of what the data disk can reserve if less, none under 32)",
    integer(0, 16_000_000),
    none,
  ),
  defaultMemoryMb: setting('WORKER_DEFAULT_MEMORY_MB', 'memory limit of sessions that set none (0: none)', integer(0, 10_000_000), () => 2048),
  // All cores but one: a session spinning on every core (a fork bomb at its pids limit) took the
  // worker's and its neighbours' time with it (issue 20: tests/security/neighbour-stress.test.ts).
  defaultCpuPercent: setting(
    'WORKER_DEFAULT_CPU_PERCENT',
    "CPU limit of sessions that set none, in percent of one core (0: none; default: all the host's cores but one)",
    integer(0, 100_000),
    () => 100 * Math.max(1, availableParallelism() - 1),
  ),
} satisfies { [K in keyof WorkerConfig]: Setting<WorkerConfig[K]> };

/** `WORKER_GRPC_ADDR` → `grpc-addr`, `COORDINATOR_ADDR` → `coordinator-addr`, `WORKER_ID` → `worker-id`. */
export function flagName(envName: string): string {
  const name = envName === 'WORKER_ID' ? envName : envName.replace(/^WORKER_/, '');
  return name.toLowerCase().replace(/_/g, '-');
}

/** A setting's default as its flag takes it (sizes in the flag's unit: MB for `_MB`, KB for `_KB`), or "unset". */
function shownDefault(s: Setting<unknown>): string {
  const value = s.fallback();
  if (value === undefined) return 'unset';
  const candidates: unknown[] = typeof value === 'number' ? [value, value / (1024 * 1024), value / 1024] : [value];
  const given = (candidate: unknown) => {
    try {
      return s.parse(String(candidate), s.env) === value;
    } catch {
      return false;
    }
  };
  return String(candidates.find(given) ?? value); // eslint-disable-line @typescript-eslint/no-base-to-string -- defaults are numbers, strings and booleans
}

export function usage(): string {
  const rows = Object.values(SETTINGS).map((s) => `  --${flagName(s.env).padEnd(26)} ${s.env.padEnd(32)} ${s.help} (default: ${shownDefault(s)})`);
  return [
    'Usage: codegen-mcp-worker [flags]',
    'The CodeGen-MCP worker (the gRPC server). Each flag may instead be set by its environment variable; a flag wins.',
    '',
    `  --${'help'.padEnd(26)} ${''.padEnd(32)} print this and exit`,
    `  --${'version'.padEnd(26)} ${''.padEnd(32)} print the version and exit`,
    ...rows,
  ].join('\n');
}

/** Reads flags (winning) and environment variables; throws ConfigError naming the bad value. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): WorkerConfig {
  const options = Object.fromEntries(Object.values(SETTINGS).map((s) => [flagName(s.env), { type: 'string' as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError(`${messageOf(err)}\n\n${usage()}`);
  }
  if (values.help) throw new HelpRequested(usage());

  const config: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [string, Setting<unknown>][]) {
    const flag = values[flagName(s.env)];
    const raw = typeof flag === 'string' ? flag : env[s.env];
    const name = typeof flag === 'string' ? `--${flagName(s.env)}` : s.env;
    config[key] = raw === undefined || raw === '' ? s.fallback() : s.parse(raw, name);
  }
  const checked = config as unknown as WorkerConfig;
  checkSecurity(checked);
  return checked;
}

/** Settings that only make sense together, and the refusal to serve the network unauthenticated. */
function checkSecurity(config: WorkerConfig): void {
  if (config.authToken && config.authTokenFile) throw new ConfigError('WORKER_AUTH_TOKEN and WORKER_AUTH_TOKEN_FILE are both set: give one');
  if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) throw new ConfigError('WORKER_TLS_CERT and WORKER_TLS_KEY go together: give both or neither');
  if (config.tlsClientCa && !config.tlsCert) throw new ConfigError('WORKER_TLS_CLIENT_CA (mTLS) needs WORKER_TLS_CERT and WORKER_TLS_KEY');
  if (Boolean(config.coordinatorTlsCert) !== Boolean(config.coordinatorTlsKey))
    throw new ConfigError('COORDINATOR_TLS_CERT and COORDINATOR_TLS_KEY go together: give both or neither');
  const networkDefault = config.networkDefault ?? (config.allowNetwork ? 'open' : 'none');
  if (NETWORK_MODES.indexOf(networkDefault) > NETWORK_MODES.indexOf(config.networkMax))
    throw new ConfigError(`WORKER_NETWORK_DEFAULT ${networkDefault} is wider than WORKER_NETWORK_MAX ${config.networkMax}`);
  const guarded = Boolean(config.authToken || config.authTokenFile || config.tlsClientCa);
  if (!guarded && !config.insecure && !isLoopback(config.grpcAddr)) {
    throw new ConfigError(
      `WORKER_GRPC_ADDR ${config.grpcAddr} is not a loopback address, and nothing would stop anyone who reaches it from running code: set WORKER_AUTH_TOKEN (or WORKER_TLS_CLIENT_CA for mTLS), or WORKER_INSECURE=true to accept that`,
    );
  }
}
