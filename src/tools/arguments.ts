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

/** A yes/no argument: "true" or "false" (absent or empty: `otherwise`). */
export function parseFlag(tool: string, name: string, value: string | undefined, otherwise = false): boolean {
  if (value === undefined || value === '') return otherwise;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw errors.invalidArgument(`${tool} ${name} must be 'true' or 'false', got '${value.slice(0, 40)}'`);
}

/** A whole number argument from 0 up (absent or empty: `otherwise`). */
export function parseCount(tool: string, name: string, value: string | undefined, otherwise = 0): number {
  if (value === undefined || value === '') return otherwise;
  if (!/^\d{1,15}$/.test(value)) throw errors.invalidArgument(`${tool} ${name} must be a whole number from 0 up, got '${value.slice(0, 40)}'`);
  return Number(value);
}

/** A terminal's size from `rows` and `cols` (each 1 to 9999; absent: 24 by 80). */
export function terminalSize(tool: string, rows: string | undefined, cols: string | undefined): { rows: number; cols: number } {
  const size = { rows: parseCount(tool, 'rows', rows, 24), cols: parseCount(tool, 'cols', cols, 80) };
  if (size.rows < 1 || size.rows > 9999 || size.cols < 1 || size.cols > 9999) throw errors.invalidArgument(`${tool} rows and cols must be from 1 to 9999`);
  return size;
}
