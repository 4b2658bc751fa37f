import { getHeapStatistics } from 'node:v8';
import { SharedBudget } from '../sharedBudget.js';
import type { Tree } from '../storage/fileTree.js';

/** Heap a kept tree takes per entry besides its path: a Map slot and an entry object (measured: about 300 bytes). */
const KEPT_BYTES_PER_ENTRY = 300;
/**
 * Heap a checkpoint or a restore takes per entry while it runs, besides its path: the new tree,
 * its parent, their diff, the archive's list and the tree's JSON (measured: about 2 KB at the peak).
 */
const WORKING_BYTES_PER_ENTRY = 2048;
/** Copies of each path a checkpoint holds at its peak (measured: 700-byte paths added 1.4 KB an entry). */
const PATH_COPIES = 3;
/** Heap an archive's entry takes once opened for a restore, besides its name: its directory entry and what extraction needs of it. */
const OPENED_BYTES_PER_ENTRY = 512;

/** The heap a checkpoint of `entries` entries and `pathBytes` of paths takes at most while it runs. */
export function workingBytes(entries: number, pathBytes: number): number {
  return entries * WORKING_BYTES_PER_ENTRY + pathBytes * PATH_COPIES;
}

/** The heap archives of `entries` entries in all, `directoryBytes` of central directories, take once opened for a restore. */
export function openedBytes(entries: number, directoryBytes: number): number {
  return entries * OPENED_BYTES_PER_ENTRY + directoryBytes * 2;
}

/** Trees counted so far: a remembered tree is not changed, and a session counts its trees at every checkpoint. */
const counted = new WeakMap<Tree, number>();

/** The heap a tree takes, kept: its entries, their paths and links' targets. */
export function keptBytes(tree: Tree): number {
  let bytes = counted.get(tree);
  if (bytes !== undefined) return bytes;
  bytes = tree.size * KEPT_BYTES_PER_ENTRY;
  for (const [path, entry] of tree) bytes += path.length + (entry.target?.length ?? 0);
  counted.set(tree, bytes);
  return bytes;
}

/** The part of the worker's heap file trees may take, all sessions together: half of it. */
export const defaultTreeMemoryBytes = () => Math.floor(getHeapStatistics().heap_size_limit / 2);

/**
 * The worker's heap for file trees, all sessions together. A checkpoint holds a tree of every
 * file of its session while it runs (up to MAX_CHECKPOINT_ENTRIES), and a session keeps its
 * last checkpoint's tree and its baseline afterwards, for its next incremental checkpoint: ten
 * sessions of half a million files each, checkpointing side by side, took more than V8 gives a
 * process, and the worker died with every session in it.
 *
 * Checkpoints and restores hold what they will take before they build a tree, in line (one
 * larger than the whole goes alone); kept trees are dropped, least recently used first, to make
 * room, and their sessions read them back from their files when next needed.
 */
export class TreeMemory {
  private readonly working: SharedBudget;
  /** Kept trees by owner, least recently used first, and what each drops them. */
  private readonly kept = new Map<object, { bytes: number; drop: () => void }>();
  private keptTotal = 0;

  constructor(readonly limitBytes: number = defaultTreeMemoryBytes()) {
    this.working = new SharedBudget(limitBytes);
  }

  /** Bytes held by work in progress and by kept trees (seen by tests). */
  get usage(): { working: number; kept: number } {
    return { working: this.working.held, kept: this.keptTotal };
  }

  /**
   * Waits until `bytes` more fit beside the work in progress (kept trees are dropped for them),
   * then holds them; resolves with the function that gives them back (once).
   */
  async hold(bytes: number, signal?: AbortSignal): Promise<() => void> {
    this.makeRoom(bytes);
    await this.working.hold(bytes, signal);
    this.makeRoom(0);
    let held = true;
    return () => {
      if (held) this.working.release(bytes);
      held = false;
    };
  }

  /**
   * Keeps `owner`'s trees, `bytes` of them (what it kept before is replaced); past the limit the
   * least recently used are dropped, this one last. `drop` lets go of them.
   */
  keep(owner: object, bytes: number, drop: () => void): void {
    this.forget(owner);
    this.kept.set(owner, { bytes, drop });
    this.keptTotal += bytes;
    this.makeRoom(0);
  }

  /** `owner`'s trees were used: they are dropped last. */
  touch(owner: object): void {
    const kept = this.kept.get(owner);
    if (!kept) return;
    this.kept.delete(owner);
    this.kept.set(owner, kept);
  }

  /** `owner` keeps nothing any more (its session is gone). */
  forget(owner: object): void {
    const kept = this.kept.get(owner);
    if (!kept) return;
    this.kept.delete(owner);
    this.keptTotal -= kept.bytes;
  }

  /** Drops kept trees, least recently used first, until they fit beside the work in progress and `extra`. */
  private makeRoom(extra: number): void {
    for (const [owner, kept] of this.kept) {
      if (this.keptTotal + this.working.held + extra <= this.limitBytes) return;
      this.kept.delete(owner);
      this.keptTotal -= kept.bytes;
      kept.drop();
    }
  }
}
