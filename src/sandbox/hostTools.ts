import { constants } from 'node:fs';
import { pathExists } from '../storage/pathExists.js';
import { delimiter, join } from 'node:path';

/** The absolute path of `name` on the worker's PATH, or undefined. */
export async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const candidate = join(dir, name);
    if (await pathExists(candidate, constants.X_OK)) return candidate;
  }
  return undefined;
}
