import { open, readFile, rename } from 'node:fs/promises';

/** Writes a JSON file atomically: temporary name, fsync, rename. */
export async function writeJsonAtomically(file: string, value: unknown): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}`;
  const handle = await open(temporary, 'w', 0o600);
  try {
    await handle.writeFile(JSON.stringify(value, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
}

/** A JSON file's value, or undefined when it is missing or unreadable. */
export async function readJsonFile<T>(file: string): Promise<T | undefined> {
  return readFile(file, 'utf8').then(
    (raw) => JSON.parse(raw) as T,
    () => undefined,
  );
}
