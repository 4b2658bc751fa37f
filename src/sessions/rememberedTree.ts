import type { Tree, TreeEntry } from '../storage/fileTree.js';
import type { WorkspaceStore } from '../storage/workspaceStore.js';

// v2: names as byte strings, entries with ctime and inode (storage/fileTree.ts). A v1 tree is
// not read: the next incremental checkpoint after an upgrade is a full one.
const BASE = 'checkpoint-tree-v2.json';
const CHANGES = 'checkpoint-tree-changes-v2.json';
/** The files beside a session's record that hold its last checkpoint's tree (a fork copies them). */
export const CHECKPOINT_TREE_FILES = [BASE, CHANGES];

/** Changes since the base past which it is written whole again: a quarter of its entries, and at least this many. */
const REBASE_AT_LEAST = 1024;

interface Changes {
  changed: Map<string, TreeEntry>;
  deleted: Set<string>;
}

interface BaseFile {
  id: string;
  chainLength: number;
  /** What the chain's archives name in all (absent in files of earlier releases). */
  chainSize?: ChainSize;
  entries: [string, TreeEntry][];
}

interface ChangesFile {
  /** The checkpoint whose base file these changes apply to. */
  base: string;
  id: string;
  chainLength: number;
  chainSize?: ChainSize;
  changed: [string, TreeEntry][];
  deleted: string[];
}

/** What a chain's archives name in all: entries, and bytes of their paths. */
export interface ChainSize {
  entries: number;
  pathBytes: number;
}

/**
 * A checkpoint's tree as remembered: its id, its chain's length (1: a full one) and size
 * (unknown, for files of earlier releases: past any bound) and its tree.
 */
export interface RememberedCheckpoint {
  id: string;
  chainLength: number;
  chainSize: ChainSize;
  tree: Tree;
}

const UNKNOWN_SIZE: ChainSize = { entries: Number.MAX_SAFE_INTEGER, pathBytes: Number.MAX_SAFE_INTEGER };
const chainSizeOf = ({ chainSize: size }: { chainSize?: Partial<ChainSize> }): ChainSize =>
  Number.isSafeInteger(size?.entries) && Number.isSafeInteger(size?.pathBytes) ? { entries: size!.entries!, pathBytes: size!.pathBytes! } : UNKNOWN_SIZE;

/** Whether a stored value is a tree's entries, [path, entry] pairs (the baseline tree is stored so too). */
export const isEntries = (v: unknown) =>
  Array.isArray(v) && v.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'object' && e[1] !== null);
const isHeader = (v: unknown) => typeof (v as { id?: unknown })?.id === 'string' && Number.isSafeInteger((v as { chainLength?: unknown }).chainLength);
const isBase = (v: unknown) => isHeader(v) && isEntries((v as { entries?: unknown }).entries);
const isChanges = (v: unknown) => {
  const c = v as Partial<Record<keyof ChangesFile, unknown>>;
  return isHeader(v) && typeof c.base === 'string' && isEntries(c.changed) && Array.isArray(c.deleted) && c.deleted.every((p) => typeof p === 'string');
};

/** Whether two entries of a tree are the same in every field. */
function sameEntry(a: TreeEntry, b: TreeEntry): boolean {
  return (
    a.type === b.type &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs &&
    a.ino === b.ino &&
    a.mode === b.mode &&
    a.target === b.target &&
    a.racy === b.racy
  );
}

/**
 * The tree of a session's last checkpoint on disk, for a restarted worker (its next incremental
 * checkpoint is made against it): a base tree written whole, and the entries changed and deleted
 * since, rewritten at each incremental checkpoint. The whole tree of a large workspace (3 MB of
 * JSON for 20,000 entries) held the event loop tens of milliseconds at every checkpoint, while
 * one incremental checkpoint usually changes a few entries. Past a quarter of the base's entries
 * the base is written again. Neither file is fsynced: a tree a crash loses or leaves stale
 * names another checkpoint than the record, and the next incremental checkpoint is a full one.
 */
export class RememberedTree {
  /** The base on disk (as last written or read) and the changes since it, as on disk too. */
  private base: { id: string; changes: Changes } | undefined;

  constructor(
    private readonly store: Pick<WorkspaceStore, 'readExtra' | 'writeExtra'>,
    private readonly sessionId: string,
  ) {}

  /**
   * Remembers `tree` as checkpoint `id`'s (its chain's length and entries with it). `previous`: the tree remembered last, if the session
   * knows it; only then is it written as changes since the base.
   */
  async save(id: string, chainLength: number, chainSize: ChainSize, tree: Tree, previous: Tree | undefined): Promise<void> {
    const base = this.base;
    if (previous && base) {
      const { changed, deleted } = base.changes;
      let count = changed.size + deleted.size;
      const limit = Math.max(REBASE_AT_LEAST, tree.size / 4);
      for (const [path, entry] of tree) {
        const before = previous.get(path);
        if (before && sameEntry(before, entry)) continue;
        changed.set(path, entry);
        deleted.delete(path);
        count++;
      }
      for (const path of previous.keys()) {
        if (tree.has(path)) continue;
        changed.delete(path);
        deleted.add(path);
        count++;
      }
      if (count <= limit) {
        const file: ChangesFile = { base: base.id, id, chainLength, chainSize, changed: [...changed], deleted: [...deleted] };
        await this.store.writeExtra(this.sessionId, CHANGES, file, false);
        return;
      }
    }
    this.base = { id, changes: { changed: new Map(), deleted: new Set() } };
    // The changes file left names the old base: a restarted worker passes over it.
    const file: BaseFile = { id, chainLength, chainSize, entries: [...tree] };
    await this.store.writeExtra(this.sessionId, BASE, file, false);
  }

  /** The tree last remembered, as the files hold it; undefined when there is none (or it is damaged). */
  async load(): Promise<RememberedCheckpoint | undefined> {
    const base = await this.store.readExtra<BaseFile>(this.sessionId, BASE, isBase).catch(() => undefined);
    if (!base) return undefined;
    const tree: Tree = new Map(base.entries);
    const changes = await this.store.readExtra<ChangesFile>(this.sessionId, CHANGES, isChanges).catch(() => undefined);
    const applied = changes?.base === base.id ? changes : undefined;
    this.base = { id: base.id, changes: { changed: new Map(applied?.changed), deleted: new Set(applied?.deleted) } };
    if (!applied) return { id: base.id, chainLength: base.chainLength, chainSize: chainSizeOf(base), tree };
    for (const path of applied.deleted) tree.delete(path);
    for (const [path, entry] of applied.changed) tree.set(path, entry);
    return { id: applied.id, chainLength: applied.chainLength, chainSize: chainSizeOf(applied), tree };
  }

  /** Takes what `source` knows of its files (a fork's, whose files are copies of the source's). */
  inherit(source: RememberedTree): void {
    const base = source.base;
    this.base = base && { id: base.id, changes: { changed: new Map(base.changes.changed), deleted: new Set(base.changes.deleted) } };
  }
}
