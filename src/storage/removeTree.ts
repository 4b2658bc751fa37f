import { lstat, readdir, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { at, errnoOf, openChildDirectory, openTrustedDirectory } from './beneath.js';

/** Descriptors one removal holds at most; a tree nested deeper is flattened as it goes. */
const MAX_OPEN_LEVELS = 64;
/** Unlinks in flight at once in one directory. */
const UNLINK_BATCH = 64;

/**
 * Removes `path` and everything under it, however deep the tree and long its paths, never
 * following a link (storage/beneath.ts): what the session left (a tree deeper than PATH_MAX, a
 * link swapped in) can neither stop the removal nor send it outside. A directory more than
 * MAX_OPEN_LEVELS below the top is moved up to the top first (a rename inside one filesystem)
 * and emptied from there, so neither paths nor open descriptors grow with the depth.
 * Call it when no process of the session runs any more (the tree would otherwise keep growing).
 */
export async function removeTree(path: string): Promise<void> {
  const parent = await openTrustedDirectory(dirname(path)).catch((err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  });
  if (!parent) return;
  try {
    await removeEntry(parent, basename(path));
  } finally {
    await parent.close();
  }
}

/** Removes everything in the directory `path`, which stays (empty), as removeTree would. */
export async function emptyTree(path: string): Promise<void> {
  const dir = await openTrustedDirectory(path);
  try {
    await emptyDirectory(dir, (await dir.stat()).dev);
  } finally {
    await dir.close();
  }
}

/** Removes the entry `name` of `dir` (a file, a link, or a whole directory); names below it are read as bytes, whatever they are. */
export async function removeEntry(dir: FileHandle, name: string | Buffer): Promise<void> {
  const st = await lstat(at(dir, name)).catch(() => undefined);
  if (!st) return;
  if (!st.isDirectory()) {
    await unlink(at(dir, name)).catch(ignoreGone);
    return;
  }
  const top = await openChildDirectory(dir, name).catch(() => undefined);
  if (top) {
    try {
      await emptyDirectory(top, st.dev);
    } finally {
      await top.close();
    }
  }
  await rmdir(at(dir, name)).catch(ignoreGone);
}

/** Empties `top` (on device `dev`), moving directories found too deep up into it first. */
async function emptyDirectory(top: FileHandle, dev: number): Promise<void> {
  const hoisted: string[] = [];
  await emptyLevels(top, top, dev, 0, hoisted);
  while (hoisted.length > 0) {
    const name = hoisted.pop()!;
    const dir = await openChildDirectory(top, name).catch(() => undefined);
    if (dir) {
      try {
        await emptyLevels(dir, top, dev, 1, hoisted);
      } finally {
        await dir.close();
      }
    }
    await rmdir(at(top, name)).catch(ignoreGone);
  }
}

async function emptyLevels(dir: FileHandle, top: FileHandle, dev: number, depth: number, hoisted: string[]): Promise<void> {
  // As bytes: a name that is not UTF-8 would not be found again by its decoded text (storage/byteNames.ts).
  const names = await readdir(`/proc/self/fd/${dir.fd}`, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
  const files: Buffer[] = [];
  for (const name of names) {
    const st = await lstat(at(dir, name)).catch(() => undefined);
    if (!st) continue;
    if (!st.isDirectory()) {
      files.push(name);
      continue;
    }
    if (depth >= MAX_OPEN_LEVELS && st.dev === dev) {
      const moved = `.removing-${randomBytes(8).toString('hex')}`;
      await rename(at(dir, name), at(top, moved));
      hoisted.push(moved);
      continue;
    }
    const child = await openChildDirectory(dir, name).catch(() => undefined);
    if (child) {
      try {
        await emptyLevels(child, top, dev, depth + 1, hoisted);
      } finally {
        await child.close();
      }
    }
    await rmdir(at(dir, name)).catch(ignoreGone);
  }
  for (let i = 0; i < files.length; i += UNLINK_BATCH) {
    await Promise.all(files.slice(i, i + UNLINK_BATCH).map((name) => unlink(at(dir, name)).catch(ignoreGone)));
  }
}

function ignoreGone(err: unknown): void {
  if (errnoOf(err) !== 'ENOENT') throw err;
}
