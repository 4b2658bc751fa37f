import type { SessionConfig } from '../../gen/codegen/v1/common.js';
import { errors, quoted } from '../errors.js';
import {
  effectiveNetworkPolicy,
  modeOfName,
  NETWORK_MODES,
  requestedNetworkPolicy,
  type NetworkModeName,
  type NetworkSettings,
  type SessionNetworkPolicy,
} from '../sandbox/network/networkPolicy.js';

/** The languages of the reference's SessionConfig; a worker offers those its host has (WORKER_LANGUAGES). */
export const LANGUAGES = ['python', 'node', 'go'] as const;
export type LanguageName = (typeof LANGUAGES)[number];

/** A session's configuration with defaults applied; 0 in a limit means "not set". */
export interface EffectiveSessionConfig {
  language: LanguageName;
  limits: { maxMemoryMb: number; maxCpuPercent: number; maxDiskMb: number; timeoutSeconds: number };
  env: Record<string, string>;
  /** What the session's code may reach (docs/api.md "Network"), its mode resolved. */
  network: SessionNetworkPolicy;
}

/** A worker that gives sessions no network and lets none ask for one (the unit tests' default). */
export const NO_NETWORK: NetworkSettings = { defaultMode: 'none', maxMode: 'none' };

export function nonNegative(name: string, value: number): number {
  if (value < 0) throw errors.invalidArgument(`${name} must not be negative, got ${value}`);
  return value;
}

/** What a session's environment may hold: it is passed on every process start (execve's limits). */
export const ENV_LIMITS = { variables: 128, nameChars: 128, valueBytes: 32 * 1024, totalBytes: 128 * 1024 } as const;

function checkEnv(env: Record<string, string>): void {
  const entries = Object.entries(env);
  if (entries.length > ENV_LIMITS.variables)
    throw errors.invalidArgument(`config.env has ${entries.length} variables; at most ${ENV_LIMITS.variables} are allowed`);
  let total = 0;
  for (const [name, value] of entries) {
    if (name.length > ENV_LIMITS.nameChars)
      throw errors.invalidArgument(`config.env name ${quoted(name)} is ${name.length} characters long; at most ${ENV_LIMITS.nameChars} are allowed`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw errors.invalidArgument(`config.env name ${quoted(name)} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)`);
    if (value.includes('\0')) throw errors.invalidArgument(`config.env value of ${quoted(name)} contains a NUL byte`);
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > ENV_LIMITS.valueBytes)
      throw errors.invalidArgument(`config.env value of ${quoted(name)} is ${bytes} bytes; at most ${ENV_LIMITS.valueBytes} are allowed`);
    total += name.length + 1 + bytes;
  }
  if (total > ENV_LIMITS.totalBytes) throw errors.invalidArgument(`config.env holds ${total} bytes in all; at most ${ENV_LIMITS.totalBytes} are allowed`);
}

/**
 * Validates a CreateSession config and applies defaults (language: python); INVALID_ARGUMENT
 * names the bad value, and for a language the worker does not offer, the ones it does.
 */
export function effectiveSessionConfig(
  config: (Omit<SessionConfig, 'network'> & Partial<Pick<SessionConfig, 'network'>>) | undefined,
  offered: readonly string[] = LANGUAGES,
  network: NetworkSettings = NO_NETWORK,
): EffectiveSessionConfig {
  const language = config?.language || 'python';
  if (!offered.includes(language)) {
    throw errors.invalidArgument(`config.language ${quoted(language)} is not supported by this worker; supported: ${offered.join(', ')}`);
  }
  const limits = config?.limits;
  const env = config?.env ?? {};
  checkEnv(env);
  return {
    language: language as LanguageName,
    limits: {
      maxMemoryMb: nonNegative('config.limits.max_memory_mb', limits?.maxMemoryMb ?? 0),
      maxCpuPercent: nonNegative('config.limits.max_cpu_percent', limits?.maxCpuPercent ?? 0),
      maxDiskMb: nonNegative('config.limits.max_disk_mb', limits?.maxDiskMb ?? 0),
      timeoutSeconds: nonNegative('config.limits.timeout_seconds', limits?.timeoutSeconds ?? 0),
    },
    env: { ...env },
    network: effectiveNetworkPolicy(requestedNetworkPolicy(config?.network), network),
  };
}

/** A config as CreateSession takes it (a restore creates its session from the checkpoint's). */
export function sessionConfigOf(config: EffectiveSessionConfig): SessionConfig {
  return { ...config, network: { mode: modeOfName(config.network.mode), allow: config.network.allow } };
}

/**
 * A config read back from disk or a checkpoint store (written by an earlier worker, perhaps an
 * older one): its shape checked, then the same checks as a CreateSession's. Throws when damaged.
 */
export function storedSessionConfig(value: unknown): EffectiveSessionConfig {
  const config = value as Partial<Record<keyof EffectiveSessionConfig, unknown>> | null;
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(config) || typeof config.language !== 'string' || !isObject(config.limits) || !isObject(config.env))
    throw new Error('the session config is damaged');
  const limits = config.limits;
  const number = (name: string) => {
    const v = limits[name] ?? 0;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`the session config's limits.${name} is not a number`);
    return v;
  };
  const env = config.env;
  if (!Object.values(env).every((v) => typeof v === 'string')) throw new Error("the session config's env holds a value that is not a string");
  // Records from before networks had no policy: their sessions had none.
  const network = (config as { network?: unknown }).network ?? { mode: 'none', allow: [] };
  if (
    !isObject(network) ||
    !NETWORK_MODES.includes(network.mode as NetworkModeName) ||
    !Array.isArray(network.allow) ||
    !network.allow.every((entry) => typeof entry === 'string')
  )
    throw new Error("the session config's network policy is damaged");
  return effectiveSessionConfig(
    {
      language: config.language,
      limits: {
        maxMemoryMb: number('maxMemoryMb'),
        maxCpuPercent: number('maxCpuPercent'),
        maxDiskMb: number('maxDiskMb'),
        timeoutSeconds: number('timeoutSeconds'),
      },
      env: env as Record<string, string>,
      network: { mode: modeOfName(network.mode as NetworkModeName), allow: network.allow },
    },
    LANGUAGES,
    // A stored policy was within the ceiling of the worker that took it; this one's is applied where it serves the session.
    { defaultMode: 'none', maxMode: 'open' },
  );
}
