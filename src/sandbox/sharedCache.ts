import { chown, lstat, mkdir } from 'node:fs/promises';
import type { Owner } from '../storage/owner.js';
import { removeTree } from '../storage/removeTree.js';

/**
 * Readies a download cache that pkg.install's fetching step shares across sessions: it belongs
 * to the installer uid (the only writer). One left by a run with other uids is dropped rather
 * than re-owned: it is only a cache.
 */
export async function prepareSharedCache(dir: string, installer: Owner | undefined): Promise<void> {
  const st = await lstat(dir).catch(() => undefined);
  if (st && (!st.isDirectory() || (installer && st.uid !== installer.uid))) await removeTree(dir);
  await mkdir(dir, { recursive: true });
  if (installer) await chown(dir, installer.uid, installer.gid);
}
