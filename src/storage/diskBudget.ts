import { readdirSync, statfsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errors } from '../errors.js';

/**
 * The data directory's filesystem, shared by every session's disk image (sparse: each takes only
 * what it has written, and may grow to its size), the worker's records and its checkpoints. Left
 * to itself, one session writing more than the host has free fills it, and the others' images
 * then fail their writes (the kernel remounts them read-only), records cannot be written, the
 * worker cannot start. So each image's size is reserved against the free space before it is
 * made: what an image may still grow by (its size less what it has written, which the free
 * space already counts) adds up, over every image, to at most `overcommit` times the free space
 * less a floor kept for the worker's own files. A checkpoint reserves what it may write the same
 * way while it is written. The package caches live on an image of their own (WORKER_CACHE_DISK_MB,
 * sandbox/caches/cacheDisk.ts), reserved at start-up and counted like a session's.
 */

export interface DiskSpace {
  /** Bytes free on the filesystem (for an unprivileged writer; root may have a little more). */
  freeBytes: number;
  /** Bytes the images may still grow by, plus reservations being made now. */
  committedBytes: number;
  /** Bytes a new reservation may take: (free - floor) × overcommit - committed. */
  availableBytes: number;
}

export interface DiskBudgetOptions {
  /** A path on the filesystem (the data directory). */
  path: string;
  /** Directories whose entries each may hold an image named `image` (sessions and spares). */
  imageDirs: string[];
  image: string;
  /** Images of the worker's own at fixed paths (the package caches' disk), counted the same way. */
  files?: string[];
  /** 1.0: the images' sizes never add up to more than is free. */
  overcommit: number;
  /** Bytes kept free for the worker's records, logs and lock. */
  floorBytes: number;
}

/** A reservation held while something is made; released once it exists (then it counts by itself) or failed. */
export interface Reservation {
  release(): void;
}

const MB = 1024 * 1024;

/** Kept free for the worker's own files (records, trees, logs, the lock's holder): never reserved. */
export const DISK_FLOOR_BYTES = 64 * MB;

export class DiskBudget {
  private pending = 0;

  constructor(private readonly options: DiskBudgetOptions) {}

  /**
   * Reserves `bytes` for `what`, or refuses RESOURCE_EXHAUSTED saying how much is free.
   * Synchronous from the check to the reservation: two requests cannot both take the last room.
   */
  reserve(bytes: number, what: string): Reservation {
    const space = this.space();
    if (bytes > space.availableBytes) {
      throw errors.tooLarge(
        `not enough disk for ${what}: it needs ${Math.ceil(bytes / MB)} MB, ${Math.max(0, Math.floor(space.availableBytes / MB))} MB can be reserved ` +
          `(${Math.floor(space.freeBytes / MB)} MB free on the worker's data disk, ${Math.ceil(space.committedBytes / MB)} MB promised to sessions' disks, ` +
          `overcommit ${this.options.overcommit})`,
      );
    }
    this.pending += bytes;
    let held = true;
    return {
      release: () => {
        if (held) this.pending -= bytes;
        held = false;
      },
    };
  }

  /** What the filesystem has free, what is promised, and what a new reservation may take (a metric, and the check above). */
  space(): DiskSpace {
    const fs = statfsSync(this.options.path);
    const freeBytes = fs.bavail * fs.bsize;
    const committedBytes = this.growth() + this.pending;
    const availableBytes = Math.max(0, freeBytes - this.options.floorBytes) * this.options.overcommit - committedBytes;
    return { freeBytes, committedBytes, availableBytes };
  }

  /** What the images on disk may still grow by: each one's size less the blocks it holds. */
  private growth(): number {
    let bytes = 0;
    for (const file of this.options.files ?? []) bytes += growthOf(file);
    for (const dir of this.options.imageDirs) {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        bytes += growthOf(join(dir, name, this.options.image));
      }
    }
    return bytes;
  }
}

/**
 * What the image at `file` may still grow by (0: none there, or not an image). A clone (a fork's
 * disk, marked by markShared) shares its blocks with its source until either writes them, so
 * the blocks it holds are not its own: it may take its whole size. (Its source's and its own
 * counts then add up to what both may take, each writing all it has.)
 */
function growthOf(file: string): number {
  try {
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st?.isFile()) return 0;
    return statSync(`${file}${SHARED_MARK}`, { throwIfNoEntry: false }) ? st.size : Math.max(0, st.size - st.blocks * 512);
  } catch {
    return 0; // not a session's directory
  }
}

/** Beside an image that shares blocks with another (a reflinked copy). */
const SHARED_MARK = '.shared';

/** Marks the image at `file` as sharing its blocks (see growthOf). */
export async function markShared(file: string): Promise<void> {
  await writeFile(`${file}${SHARED_MARK}`, '');
}
