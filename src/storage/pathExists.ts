import { constants } from 'node:fs';
import { access } from 'node:fs/promises';

/**
 * Whether a host path the worker itself controls exists (and allows `mode`). Never for a path a
 * session can change: what it names may be swapped before it is used (see beneath.ts).
 */
export function pathExists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}
