/**
 * An in-memory store of a session's extra files (unit tests of the trees kept beside its record):
 * the JSON round trip included, and each file's writes counted.
 */
export function fakeExtrasStore() {
  const files = new Map<string, string>();
  const writes: string[] = [];
  return {
    files,
    writes,
    async readExtra<T>(sessionId: string, name: string, isValid: (v: unknown) => boolean): Promise<T | undefined> {
      const raw = files.get(`${sessionId}/${name}`);
      if (raw === undefined) return undefined;
      const value = JSON.parse(raw) as unknown;
      if (!isValid(value)) throw new Error('damaged');
      return value as T;
    },
    async writeExtra(sessionId: string, name: string, value: unknown): Promise<void> {
      files.set(`${sessionId}/${name}`, JSON.stringify(value));
      writes.push(name);
    },
    async copyExtras(from: string, to: string, names: string[]): Promise<void> {
      for (const name of names) if (files.has(`${from}/${name}`)) files.set(`${to}/${name}`, files.get(`${from}/${name}`)!);
    },
  };
}
