import { open, readFile, rename, rm } from 'node:fs/promises';
import { writeThroughThread, WriteThreadUnavailableError } from './fileWriteThread.js';

/**
 * Writes a JSON file atomically: temporary name, then rename, so a reader (or a restart) sees
 * the old content or the new, never half. `durable` (the default) fsyncs first, so it also
 * survives the host going down; frequent small updates may skip that.
 */
export async function writeJsonAtomically(file: string, value: unknown, durable = true): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}-${(temporaryCount = (temporaryCount + 1) % 1_000_000)}`;
  const text = JSON.stringify(value);
  try {
    return await writeThroughThread(file, temporary, text, durable);
  } catch (err) {
    if (!(err instanceof WriteThreadUnavailableError)) throw err;
  }
  const handle = await open(temporary, 'w', 0o600);
  try {
    try {
      await handle.writeFile(text);
      if (durable) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (err) {
    // A write refused (ENOSPC, EIO) must not leave its temporary behind: nothing would remove it.
    await rm(temporary, { force: true });
    throw err;
  }
}

let temporaryCount = 0;

/** A stored record that exists but cannot be what it should be (not JSON, or the wrong shape). */
export class DamagedRecordError extends Error {
  override name = 'DamagedRecordError';
}

/** Parses a stored record, checking its shape; DamagedRecordError saying what is wrong. */
export function parseRecord<T>(raw: string, isValid: (value: unknown) => boolean): T {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new DamagedRecordError('it is not valid JSON');
  }
  if (!isValid(value)) throw new DamagedRecordError('it lacks fields it must have');
  return value as T;
}

/** A JSON file's value; undefined when there is no such file, DamagedRecordError when it is not a valid one. */
export async function readJsonFile<T>(file: string, isValid: (value: unknown) => boolean): Promise<T | undefined> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseRecord<T>(raw, isValid);
}

/** A checker of records: every named field has the given typeof ('object' not null). */
export function hasFields(fields: Record<string, 'string' | 'number' | 'object' | 'boolean'>): (value: unknown) => boolean {
  return (value) =>
    typeof value === 'object' &&
    value !== null &&
    Object.entries(fields).every(([name, type]) => {
      const field = (value as Record<string, unknown>)[name];
      return typeof field === type && field !== null;
    });
}
