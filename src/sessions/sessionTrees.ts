import type { Tree, TreeEntry } from '../storage/fileTree.js';
import type { WorkspaceStore } from '../storage/workspaceStore.js';
import { CHECKPOINT_TREE_FILES, isEntries, RememberedTree, type RememberedCheckpoint } from './rememberedTree.js';
import { keptBytes, type TreeMemory } from './treeMemory.js';

const BASELINE_TREE = 'baseline-tree-v2.json';
/** The files beside a session's record that hold its trees (a fork copies them). */
const TREE_FILES = [...CHECKPOINT_TREE_FILES, BASELINE_TREE];

/**
 * A session's file trees: its last checkpoint's (the parent of its next incremental one) and its
 * baseline (the files as created or restored: what modified_files of a full checkpoint is
 * measured from). Both are on disk beside the session's record; in memory they are kept while
 * the worker's TreeMemory has room, and read back from the files once dropped (an adopted
 * session's too: a restarted worker does not read every session's trees at once).
 */
export class SessionTrees {
  /** The previous checkpoint; its tree when in memory. */
  private previous: (Omit<RememberedCheckpoint, 'tree'> & { tree: Tree | undefined }) | undefined;
  /** The baseline; undefined once dropped (its file holds it). A new session's is empty. */
  private baseline: Tree | undefined = new Map();
  private readonly remembered: RememberedTree;

  constructor(
    private readonly store: Pick<WorkspaceStore, 'readExtra' | 'writeExtra' | 'copyExtras'>,
    private readonly sessionId: string,
    private readonly memory: TreeMemory,
  ) {
    this.remembered = new RememberedTree(store, sessionId);
  }

  get lastCheckpointId(): string {
    return this.previous?.id ?? '';
  }

  /** An adopted session's last checkpoint, as its record names it: its tree is read when needed. */
  adopt(lastCheckpointId: string): void {
    this.previous = lastCheckpointId ? { id: lastCheckpointId, tree: undefined, chainLength: 0, chainSize: { entries: 0, pathBytes: 0 } } : undefined;
    this.baseline = undefined;
  }

  /**
   * The previous checkpoint with its tree, its chain's length (1: a full one) and size:
   * what an incremental checkpoint is made against; undefined when none, or its tree is lost.
   */
  async lastCheckpoint(): Promise<RememberedCheckpoint | undefined> {
    const previous = this.previous;
    if (!previous) return undefined;
    if (previous.tree) {
      this.memory.touch(this);
      return { ...previous, tree: previous.tree };
    }
    const read = await this.remembered.load();
    // A tree naming another checkpoint (one a crash kept from being written): the next one is full.
    if (!read || read.id !== previous.id || this.previous !== previous) return undefined;
    Object.assign(previous, read);
    this.keep();
    return read;
  }

  /** The baseline tree (read back from its file when dropped; empty when there is none). */
  async baselineTree(): Promise<Tree> {
    if (this.baseline) {
      this.memory.touch(this);
      return this.baseline;
    }
    const entries = await this.store.readExtra<[string, TreeEntry][]>(this.sessionId, BASELINE_TREE, isEntries).catch(() => undefined);
    // Returned whether kept or not: a tree that does not fit beside the work in progress is dropped at once.
    const baseline = this.baseline ?? new Map(entries);
    this.baseline = baseline;
    this.keep();
    return baseline;
  }

  /** A checkpoint made or restored: remembered, on disk too, as the parent of the next incremental one. */
  async rememberCheckpoint(checkpoint: RememberedCheckpoint): Promise<void> {
    const previous = this.previous?.tree;
    this.previous = { ...checkpoint };
    this.keep();
    await this.remembered.save(checkpoint.id, checkpoint.chainLength, checkpoint.chainSize, checkpoint.tree, previous);
  }

  /** The files a restore made: what modified_files is measured from. */
  async rememberBaseline(tree: Tree): Promise<void> {
    this.baseline = tree;
    this.keep();
    await this.store.writeExtra(this.sessionId, BASELINE_TREE, [...tree]);
  }

  /** A fork's: its source's trees as they were at the fork (their files copied beside the fork's record). */
  async inherit(source: SessionTrees): Promise<void> {
    this.previous = source.previous && { ...source.previous };
    this.baseline = source.baseline;
    this.remembered.inherit(source.remembered);
    this.keep();
    await this.store.copyExtras(source.sessionId, this.sessionId, TREE_FILES);
  }

  /** The session is gone: its trees are no longer counted. */
  forget(): void {
    this.memory.forget(this);
  }

  /** Counts the trees in memory (one held twice, a restore's baseline and checkpoint, once). */
  private keep(): void {
    const checkpoint = this.previous?.tree;
    const bytes = (checkpoint ? keptBytes(checkpoint) : 0) + (this.baseline && this.baseline !== checkpoint ? keptBytes(this.baseline) : 0);
    this.memory.keep(this, bytes, () => {
      if (this.previous) this.previous.tree = undefined;
      this.baseline = undefined;
    });
  }
}
