import { errors } from '../errors.js';
import { textBytesOf } from './textBytes.js';

/**
 * Checks a tool's arguments against the names it takes: missing required ones and unknown ones
 * are INVALID_ARGUMENT naming them.
 */
export function checkArguments<R extends string, O extends string>(
  tool: string,
  args: Record<string, string>,
  required: readonly R[],
  optional: readonly O[] = [],
): Record<R, string> & Partial<Record<O, string>> {
  const known = new Set<string>([...required, ...optional]);
  const unknown = Object.keys(args).filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw errors.invalidArgument(`${tool} does not take ${unknown.map((n) => `'${n}'`).join(', ')}; it takes ${[...known].map((n) => `'${n}'`).join(', ')}`);
  }
  // An argument carried as bytes (grpc/taskRequestDecoding.ts) is there: asking would decode it.
  const missing = required.filter((name) => !textBytesOf(args, name) && args[name] === undefined);
  if (missing.length > 0) throw errors.invalidArgument(`${tool} requires ${missing.map((n) => `'${n}'`).join(', ')}`);
  return args as Record<R, string> & Partial<Record<O, string>>;
}

export type Encoding = 'utf-8' | 'base64';

export function parseEncoding(tool: string, value: string | undefined): Encoding {
  if (value === undefined || value === '' || value === 'utf-8' || value === 'utf8') return 'utf-8';
  if (value === 'base64') return 'base64';
  throw errors.invalidArgument(`${tool} encoding must be 'utf-8' or 'base64', got '${value}'`);
}
