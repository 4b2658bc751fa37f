import { constants } from 'node:fs';
import { access, mkdir, readdir, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { errors, messageOf, WorkerError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { DiskBudget } from '../../storage/diskBudget.js';
import { removeTree } from '../../storage/removeTree.js';
import { formatDiskImage, imageBytes, isMountPoint, mountDiskImage, imageTools, syncDiskImage, unmountDiskImage } from '../confine/diskImage.js';
import { forgetUserCaches } from './sharedCache.js';

/**
 * The package caches (pip's, npm's, go's and the wheel store, storage/dataDirectory.ts) on a disk
 * of their own: an ext4 image of WORKER_CACHE_DISK_MB on the data directory's disk, made as a
 * session's disk is (diskImage.ts), loop-mounted on `<data dir>/caches/` and reserved in the
 * DiskBudget before any session or spare, so what installs leave in the caches can never take
 * the room promised to sessions' disks. It outlives the worker as sessions' disks do: a
 * restarted worker mounts it again (or finds it still mounted after a kill); one of another size
 * (the setting changed), one that no longer mounts and one an error left read-only are made
 * anew: it is only a cache.
 *
 * When the caches are nearly full, the next install empties them first, under an exclusive hold
 * no install shares (go's step 2 reads what its step 1 put in the module cache; pip's wheel store
 * hands out files), and an install failing for want of room in them (the disk nearly full after
 * it, or its error naming the caches where a write found none: installers remove what they were
 * writing) empties them and runs once more (installWithCacheRoom); failing again so, it is
 * RESOURCE_EXHAUSTED for that session alone, naming the limit. Emptying them all, rather than the least recently used entries, is
 * the simple bound that always frees the most: the cost is a slower next install, never a failure.
 */

/** What installWithCacheRoom needs of the caches (the CacheDisk, or a stand-in in tests). */
export interface CacheRoom {
  /** WORKER_CACHE_DISK_MB, named in the error when an install does not fit. */
  readonly limitMb: number;
  /** Whether the caches have (nearly) no room left; always false when they are not bounded. */
  nearlyFull(): Promise<boolean>;
  /** Empties the caches once no install uses them (`whenNearlyFull`: only if they still are then, another prune may have come first). */
  prune(whenNearlyFull: boolean): Promise<void>;
  /** Runs `use` (an install) as one of the caches' users: a prune waits for it, and it for a prune. */
  shared<T>(use: () => Promise<T>): Promise<T>;
}

/** ENOSPC and EDQUOT: a write the filesystem had no room for. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Runs a pkg.install with room in the caches: they are emptied first when nearly full, and an
 * install that fails (exit code, or a write refused for room) while they are nearly full runs once
 * more after emptying them; failing so again is `errors.cachesFull`. A cancelled or timed-out
 * install is never run again. Without `room` (caches unbounded) it only runs the install.
 */
export async function installWithCacheRoom<T extends { exitCode: number; stderr: { text: string } }>(
  room: CacheRoom | undefined,
  install: () => Promise<T>,
  options: { signal: AbortSignal; cachePaths: string[] },
): Promise<T> {
  if (!room) return install();
  if (await room.nearlyFull()) await room.prune(true);
  const attempt = () =>
    room.shared(install).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
  const outOfRoom = async (outcome: { result: T } | { error: unknown }) => {
    if (options.signal.aborted) return false;
    if ('error' in outcome ? !isNoSpace(outcome.error) : outcome.result.exitCode === 0) return false;
    // An installer removes what it was writing when it fails: its message may say where room ran out.
    return ('result' in outcome && saysNoRoomIn(outcome.result.stderr.text, options.cachePaths)) || room.nearlyFull();
  };
  let outcome = await attempt();
  if (await outOfRoom(outcome)) {
    await room.prune(false);
    outcome = await attempt();
    if (await outOfRoom(outcome)) throw errors.cachesFull(room.limitMb);
  }
  if ('error' in outcome) throw outcome.error;
  return outcome.result;
}

/** Whether an installer's error output says a write under one of `paths` found no room. */
export function saysNoRoomIn(stderr: string, paths: string[]): boolean {
  return stderr.split('\n').some((line) => /no space left on device|ENOSPC/i.test(line) && paths.some((path) => line.includes(path)));
}

/**
 * Many holders of the shared side, or one of the exclusive side; waiters are served in order, so
 * a prune waiting for the installs running now is not starved by the installs that come after it.
 */
export class SharedExclusive {
  private holders = 0;
  private exclusiveHeld = false;
  private readonly waiting: { exclusive: boolean; go: () => void }[] = [];

  shared<T>(use: () => Promise<T>): Promise<T> {
    return this.hold(false, use);
  }

  exclusive<T>(use: () => Promise<T>): Promise<T> {
    return this.hold(true, use);
  }

  private async hold<T>(exclusive: boolean, use: () => Promise<T>): Promise<T> {
    await new Promise<void>((go) => {
      this.waiting.push({ exclusive, go });
      this.dispatch();
    });
    try {
      return await use();
    } finally {
      if (exclusive) this.exclusiveHeld = false;
      else this.holders--;
      this.dispatch();
    }
  }

  private dispatch(): void {
    for (let next = this.waiting[0]; next && !this.exclusiveHeld; next = this.waiting[0]) {
      if (next.exclusive && this.holders > 0) return;
      this.waiting.shift();
      if (next.exclusive) this.exclusiveHeld = true;
      else this.holders++;
      next.go();
    }
  }
}

/** Less free than this share of the cache disk (and at least NEARLY_FULL_MIN_BYTES) is nearly full. */
const NEARLY_FULL_SHARE = 0.1;
const NEARLY_FULL_MIN_BYTES = 8 * 1024 * 1024;

export interface CacheDiskOptions {
  /** The image file and its mount point (storage/dataDirectory.ts: cacheImage, caches). */
  image: string;
  mountPoint: string;
  /** WORKER_CACHE_DISK_MB; 0: the caches on the data directory's disk, unbounded. */
  megabytes: number;
  /** Whether disk images can be made here (a worker running as root); else why not. */
  imagesUnavailable: string | undefined;
  budget: DiskBudget | undefined;
  logger: Logger;
}

export class CacheDisk implements CacheRoom {
  private readonly lock = new SharedExclusive();
  private pruners: (() => Promise<void>)[] = [];

  private constructor(
    private readonly options: CacheDiskOptions,
    /** Why the caches are not bounded here; undefined when they are. */
    private readonly unbounded: string | undefined,
  ) {}

  /** Where the caches are on the host (mounted or not). */
  get mountPoint(): string {
    return this.options.mountPoint;
  }

  get limitMb(): number {
    return this.unbounded === undefined ? this.options.megabytes : 0;
  }

  /**
   * The caches' disk made (reserved in the budget first) or mounted again. A size that cannot be
   * reserved is the budget's RESOURCE_EXHAUSTED (the worker refuses to start, naming the setting);
   * a host that cannot make images (no root, loop devices or mkfs.ext4) leaves the caches unbounded
   * on the data disk, said in the `sandbox ready` line, as sessions' disk limits are.
   */
  static async open(options: CacheDiskOptions): Promise<CacheDisk> {
    const { image, mountPoint, megabytes } = options;
    const problem = megabytes === 0 ? 'WORKER_CACHE_DISK_MB=0' : options.imagesUnavailable;
    if (problem !== undefined) {
      // A disk an earlier run (with another setting) left is given up: the caches start afresh here.
      await unmountDiskImage(mountPoint).catch(() => undefined);
      await rm(image, { force: true });
      await mkdir(mountPoint, { recursive: true });
      return new CacheDisk(options, problem);
    }
    try {
      await attach(options);
      return new CacheDisk(options, undefined);
    } catch (err) {
      if (err instanceof WorkerError) throw err;
      options.logger.warn('the package caches cannot have a disk of their own: they stay unbounded on the data disk', { error: messageOf(err) });
      await unmountDiskImage(mountPoint).catch(() => undefined);
      await rm(image, { force: true });
      await mkdir(mountPoint, { recursive: true });
      return new CacheDisk(options, messageOf(err));
    }
  }

  /** What a prune does: each empties a cache (and forgets what the worker knew of its content). */
  pruneWith(pruners: (() => Promise<void>)[]): void {
    this.pruners = pruners;
  }

  /** For the `sandbox ready` line. */
  describe(): string {
    return this.unbounded === undefined
      ? `an ext4 image of ${this.options.megabytes} MB on the data directory, loop-mounted, reserved; emptied when full`
      : `NOT BOUNDED (${this.unbounded})`;
  }

  async nearlyFull(): Promise<boolean> {
    if (this.unbounded !== undefined) return false;
    const fs = await statfs(this.options.mountPoint);
    return fs.bavail * fs.bsize < Math.max(NEARLY_FULL_MIN_BYTES, fs.blocks * fs.bsize * NEARLY_FULL_SHARE);
  }

  prune(whenNearlyFull: boolean): Promise<void> {
    return this.lock.exclusive(async () => {
      if (whenNearlyFull && !(await this.nearlyFull())) return;
      const before = await statfs(this.options.mountPoint);
      for (const pruner of this.pruners)
        await pruner().catch((err: unknown) => this.options.logger.warn('a package cache could not be emptied', { error: messageOf(err) }));
      forgetUserCaches();
      const after = await statfs(this.options.mountPoint);
      this.options.logger.info('package caches emptied', {
        why: whenNearlyFull ? 'nearly full' : 'an install found no room in them',
        limit_mb: this.options.megabytes,
        freed_mb: Math.round(((after.bavail - before.bavail) * after.bsize) / (1024 * 1024)),
      });
    });
  }

  shared<T>(use: () => Promise<T>): Promise<T> {
    return this.unbounded === undefined ? this.lock.shared(use) : use();
  }

  /** Unmounts the caches' disk (at shutdown; the next start mounts it again, so synced first). */
  async close(): Promise<void> {
    if (this.unbounded !== undefined) return;
    await syncDiskImage(this.options.mountPoint).catch((err: unknown) =>
      this.options.logger.warn('could not sync the package caches disk before unmounting it', { error: messageOf(err) }),
    );
    await unmountDiskImage(this.options.mountPoint);
  }
}

/** Mounts the image again when it is there at the size asked for; otherwise makes it anew, reserved. */
async function attach(options: CacheDiskOptions): Promise<void> {
  const { image, mountPoint, megabytes } = options;
  const bytes = imageBytes(megabytes);
  const found = await stat(image).catch(() => undefined);
  if (found?.isFile() && found.size === bytes) {
    try {
      await mountDiskImage(image, mountPoint, imageTools);
      // One an error left read-only (ext4 remounts so when its image could not be written: a data
      // disk filled by sessions under WORKER_DISK_OVERCOMMIT), found still mounted after a kill.
      await access(mountPoint, constants.W_OK);
      return;
    } catch (err) {
      options.logger.warn('the package caches disk does not mount, or only read-only: made anew', { error: messageOf(err) });
    }
  }
  await unmountDiskImage(mountPoint).catch(() => undefined);
  await rm(image, { force: true });
  // What the caches left on the data disk (WORKER_CACHE_DISK_MB was 0) is dropped, not hidden under the mount.
  if (!(await isMountPoint(mountPoint))) await removeTree(mountPoint);
  const reservation = options.budget?.reserve(bytes, `the package caches' disk (WORKER_CACHE_DISK_MB ${megabytes})`);
  try {
    await formatDiskImage(image, megabytes);
  } finally {
    reservation?.release();
  }
  await mountDiskImage(image, mountPoint, imageTools);
}

/** Removes everything in `dir`, keeping `dir` itself (its owner and mode). */
export async function emptyDirectory(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) await removeTree(join(dir, name));
}
