import { createHash } from 'node:crypto';
import { chown, lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Owner } from '../../storage/owner.js';
import { removeTree } from '../../storage/removeTree.js';

/**
 * Readies an installer's cache shared by every session (pip's, npm's): it belongs to the
 * fetching uid, its only writer. One left by a run with other uids is dropped rather than
 * re-owned: it is only a cache.
 */
export async function prepareSharedCache(dir: string, installer: Owner | undefined): Promise<void> {
  prepared.delete(dir);
  const st = await lstat(dir).catch(() => undefined);
  if (st && (!st.isDirectory() || (installer && st.uid !== installer.uid))) await removeTree(dir);
  await mkdir(dir, { recursive: true });
  if (installer) await chown(dir, installer.uid, installer.gid);
}

/** The key of a user's own caches: their user_id hashed (names of any length or bytes become a short safe one). */
export function userCacheKey(userId: string): string {
  return `u-${createHash('sha256').update(userId).digest('hex').slice(0, 32)}`;
}

/** Per-user caches readied in this run: each is checked and made once. */
const prepared = new Set<string>();

/** Forgets which per-user caches exist (a prune of the caches removed them): each is made again on use. */
export function forgetUserCaches(): void {
  prepared.clear();
}

/** `base`'s cache of the user `key` (WORKER_CACHE_SCOPE=user), readied as prepareSharedCache readies a shared one. */
export async function userCache(base: string, key: string, installer: Owner | undefined): Promise<string> {
  const dir = join(base, 'users', key);
  if (prepared.has(dir)) return dir;
  const users = join(base, 'users');
  await mkdir(users, { recursive: true });
  if (installer) await chown(users, installer.uid, installer.gid);
  await prepareSharedCache(dir, installer);
  prepared.add(dir);
  return dir;
}
