import type { SessionConfig } from '../../gen/codegen/v1/common.js';
import { errors } from '../errors.js';

export const SUPPORTED_LANGUAGES = ['python'] as const;

/** A session's configuration with defaults applied; 0 in a limit means "not set". */
export interface EffectiveSessionConfig {
  language: (typeof SUPPORTED_LANGUAGES)[number];
  limits: { maxMemoryMb: number; maxCpuPercent: number; maxDiskMb: number; timeoutSeconds: number };
  env: Record<string, string>;
}

export function nonNegative(name: string, value: number): number {
  if (value < 0) throw errors.invalidArgument(`${name} must not be negative, got ${value}`);
  return value;
}

/** Validates a CreateSession config and applies defaults; INVALID_ARGUMENT names the bad value. */
export function effectiveSessionConfig(config: SessionConfig | undefined): EffectiveSessionConfig {
  const language = config?.language || 'python';
  if (!(SUPPORTED_LANGUAGES as readonly string[]).includes(language)) {
    throw errors.invalidArgument(`config.language '${language}' is not supported by this worker; supported: ${SUPPORTED_LANGUAGES.join(', ')}`);
  }
  const limits = config?.limits;
  const env = config?.env ?? {};
  for (const [name, value] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw errors.invalidArgument(`config.env name '${name}' is not a valid environment variable name`);
    if (value.includes('\0')) throw errors.invalidArgument(`config.env value of '${name}' contains a NUL byte`);
  }
  return {
    language: language as EffectiveSessionConfig['language'],
    limits: {
      maxMemoryMb: nonNegative('config.limits.max_memory_mb', limits?.maxMemoryMb ?? 0),
      maxCpuPercent: nonNegative('config.limits.max_cpu_percent', limits?.maxCpuPercent ?? 0),
      maxDiskMb: nonNegative('config.limits.max_disk_mb', limits?.maxDiskMb ?? 0),
      timeoutSeconds: nonNegative('config.limits.timeout_seconds', limits?.timeoutSeconds ?? 0),
    },
    env: { ...env },
  };
}
