import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Status } from 'nice-grpc';
import { SessionState } from '../../gen/codegen/v1/common.js';
import { describeThrown, errors, faultOf, quoted, WorkerError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  archiveDirectory,
  extractArchive,
  openArchive,
  restoreDirectoryTimes,
  sha256Of,
  writeArchive,
  type OpenedArchive,
} from '../storage/checkpointArchive.js';
import { textOf } from '../storage/byteNames.js';
import type { DiskBudget, Reservation } from '../storage/diskBudget.js';
import { ZipFormatError } from '../storage/zipReader.js';
import { MissingArchiveError, type CheckpointRecord, type CheckpointStore, type FetchedArchive } from '../storage/checkpointStore.js';
import { DamagedRecordError } from '../storage/jsonFile.js';
import {
  BeyondHeldError,
  diffTrees,
  linkStaysWithin,
  MAX_CHECKPOINT_ENTRIES,
  MAX_CHECKPOINT_PATH_BYTES,
  MAX_LONG_PATHS_RESTORED,
  MAX_PATH_BYTES,
  scanTree,
  type Tree,
  type TreeEntry,
  type WalkCounts,
} from '../storage/fileTree.js';
import { emptyTree } from '../storage/removeTree.js';
import type { ChainSize, RememberedCheckpoint } from './rememberedTree.js';
import type { Session } from './session.js';
import { sessionConfigOf, storedSessionConfig, type EffectiveSessionConfig } from './sessionConfig.js';

/** A checkpoint's record as sessions/ reads it: the session config in it checked. */
export type SessionCheckpoint = CheckpointRecord<EffectiveSessionConfig>;
import { metrics, secondsSince } from '../telemetry/metrics.js';
import type { SessionPool } from './sessionPool.js';
import { openedBytes, workingBytes, type TreeMemory } from './treeMemory.js';

export interface CheckpointsOptions {
  store: CheckpointStore;
  pool: SessionPool;
  /** Newest checkpoints kept per session (plus the parents they need). */
  keepPerSession: number;
  /** Bytes of paths modified_files lists at most (the reply must fit in a message); past them it is cut short. */
  modifiedFilesBytes: number;
  /** The worker's heap for file trees: a checkpoint or restore holds its share while it runs. */
  treeMemory: TreeMemory;
  /** What an archive may take of the data disk is reserved while it is written; undefined: nothing reserved. */
  diskBudget?: DiskBudget | undefined;
  logger: Logger;
}

function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * What a session's checkpoint covers: its workspace, and its environment minus what ties it to
 * this host. `longAllowed`: paths past MAX_PATH_BYTES it may hold (a restore's, made before the
 * bound); `entriesHeld`: entries met past which the walk stops with a BeyondHeldError.
 */
async function sessionTree(session: Session, longAllowed = 0, entriesHeld = Infinity): Promise<Tree> {
  const paths: WalkCounts = { bytes: 0, longAllowed, entriesHeld, targetsCounted: longAllowed === 0 };
  const workspace = await scanTree(session.sandbox.workspace, 'workspace/', [], paths);
  // Left out (not even walked): remade for the restoring worker (a Python environment's pyvenv.cfg, Go's build cache).
  const env = await scanTree(session.sandbox.environment, 'env/', session.sandbox.machineSpecific, paths);
  const tree: Tree = new Map();
  // Every link of the workspace is kept as it is (a link is data, whatever it points at). The
  // environment's links that leave it (its interpreter's) belong to this host: the restoring
  // worker makes its own.
  for (const [path, entry] of workspace) tree.set(path, entry);
  for (const [path, entry] of env) if (entry.type !== 'symlink' || linkStaysWithin(path, entry.target!)) tree.set(path, entry);
  return tree;
}

/** The heap a checkpoint of `entries` entries takes at most, with the longest paths it could have. */
const checkpointBytes = (entries: number) => workingBytes(entries, Math.min(MAX_CHECKPOINT_PATH_BYTES, entries * MAX_PATH_BYTES));

/**
 * The session's tree (sessionTree), walked once its share of the worker's heap is held; resolves
 * with the function that gives the share back. The share is first for the files in use on the
 * session's own disk (which holds its workspace and its environment; without one, a tenth of what
 * a checkpoint may hold). A walk meeting more names than that (hard links: one file, many names)
 * stops, gives its share back, and walks again holding what the largest checkpoint takes.
 */
async function heldTree(session: Session, memory: TreeMemory): Promise<{ tree: Tree; release: () => void }> {
  const used = await session.sandbox.diskFilesUsed().catch(() => undefined);
  const expected = Math.min(used ?? MAX_CHECKPOINT_ENTRIES / 10, MAX_CHECKPOINT_ENTRIES);
  for (const entriesHeld of [expected, Infinity]) {
    const release = await memory.hold(checkpointBytes(Math.min(entriesHeld, MAX_CHECKPOINT_ENTRIES)));
    try {
      return { tree: await sessionTree(session, 0, entriesHeld), release };
    } catch (err) {
      release();
      if (!(err instanceof BeyondHeldError)) throw err;
    }
  }
  throw new Error('a walk held for every entry a checkpoint may hold met more');
}

/** The most an archive of `paths` (all of `tree` when undefined) can take: each file's bytes and a header of its name. */
function archiveBound(tree: Tree, paths: string[] | undefined): number {
  let bytes = 64 * 1024;
  for (const path of paths ?? tree.keys()) bytes += (tree.get(path)?.size ?? 0) + 200 + 2 * path.length;
  return bytes;
}

/** Entries the archives of `chain` (as `fetched`) name in all, and the bytes of their central directories, from their end records alone. */
async function directoriesOf(chain: SessionCheckpoint[], fetched: FetchedArchive[]): Promise<{ named: number; directoryBytes: number }> {
  const total = { named: 0, directoryBytes: 0 };
  for (const [i, link] of chain.entries()) {
    const end = await archiveDirectory(fetched[i]!.path).catch((err: unknown) => {
      if (err instanceof ZipFormatError) throw errors.checkpointDamaged(Status.DATA_LOSS, link.checkpointId, `its archive cannot be read (${err.message})`);
      throw err;
    });
    total.named += end.count;
    total.directoryBytes += end.directorySize;
  }
  return total;
}

/** Archives (a full one and its incrementals) one restore applies at most: chains written before the bound below. */
const MAX_CHAIN = 1000;
/** Past a chain this long, the next checkpoint asked to be incremental is a full one. */
export const MAX_INCREMENTAL_CHAIN = 100;
/**
 * Nor is a chain continued past this many entries, or bytes of paths, in all its archives: a
 * restore holds every entry of a chain at once, and a session rewriting all its files between
 * checkpoints would make a hundred archives of half a million entries (or 64 MiB of paths) each.
 */
export const MAX_CHAIN_SIZE: ChainSize = { entries: 2 * MAX_CHECKPOINT_ENTRIES, pathBytes: 2 * MAX_CHECKPOINT_PATH_BYTES };
/** A central directory's bytes for an entry besides its name, at most (zip64 and NTFS time extras included). */
const DIRECTORY_BYTES_PER_ENTRY = 128;
/** ...and at least: the fixed part of a central directory header. */
const ZIP_DIRECTORY_HEADER_BYTES = 46;

/** `size` with `paths` added. */
function grown(size: ChainSize, paths: string[]): ChainSize {
  let pathBytes = size.pathBytes;
  for (const path of paths) pathBytes += path.length;
  return { entries: size.entries + paths.length, pathBytes };
}

/**
 * What a checkpoint is made against and what changed since: the session's previous checkpoint
 * when it is asked to be incremental and that chain may grow by this one; else nothing (a full one).
 */
export async function sinceParent(
  session: Pick<Session, 'trees'>,
  tree: Tree,
  incremental: boolean,
): Promise<ReturnType<typeof diffTrees> & { parent?: RememberedCheckpoint; chainSize: ChainSize }> {
  const last = incremental ? await session.trees.lastCheckpoint() : undefined;
  if (last && last.chainLength < MAX_INCREMENTAL_CHAIN) {
    const diff = diffTrees(last.tree, tree);
    const chainSize = grown(last.chainSize, diff.changed);
    if (chainSize.entries <= MAX_CHAIN_SIZE.entries && chainSize.pathBytes <= MAX_CHAIN_SIZE.pathBytes) return { parent: last, chainSize, ...diff };
  }
  const diff = diffTrees(new Map<string, TreeEntry>(), tree);
  return { ...diff, chainSize: grown({ entries: 0, pathBytes: 0 }, diff.changed) };
}

/** modified_files: workspace paths as text (a name that is not UTF-8 cannot be said exactly in a proto string). */
const workspacePaths = (paths: string[]) => paths.filter((p) => p.startsWith('workspace/')).map((p) => textOf(p.slice('workspace/'.length)));

/**
 * The first of `paths` (sorted) that fit in `maxBytes` as they go on the wire (UTF-8, a tag and
 * a length each), and whether any were left out: 64 MiB of paths, a not-UTF-8 byte becoming
 * three, would not fit in a reply.
 */
export function listedPaths(paths: string[], maxBytes: number): { modifiedFiles: string[]; modifiedFilesTruncated: boolean } {
  let bytes = 0;
  for (const [i, path] of paths.entries()) {
    bytes += Buffer.byteLength(path) + 4;
    if (bytes > maxBytes) return { modifiedFiles: paths.slice(0, i), modifiedFilesTruncated: true };
  }
  return { modifiedFiles: paths, modifiedFilesTruncated: false };
}

/**
 * Checkpoints and restores: a zip of the session's workspace and environment in the checkpoint
 * store, full or incremental (what changed since the session's previous checkpoint, naming it as
 * parent), checked against its checksum and every entry before a restore extracts anything.
 */
export class Checkpoints {
  constructor(private readonly options: CheckpointsOptions) {}

  /**
   * A checkpoint of the session: a walk of its files (once the worker's heap has room for their
   * tree), an archive of what changed since its parent (of everything, for a full one), the
   * archive and record saved in the store, then its tree remembered as the next one's parent.
   */
  async checkpoint(sessionId: string, incremental: boolean): Promise<SessionCheckpoint> {
    const session = this.options.pool.get(sessionId);
    session.beginCheckpoint();
    const started = performance.now();
    const scratch = await this.options.store.scratchDir();
    const checkpointId = `checkpoint-${randomBytes(12).toString('base64url')}`;
    const temporary = join(scratch, `${checkpointId}.zip.partial`);
    let reservation: Reservation | undefined;
    let releaseMemory: (() => void) | undefined;
    try {
      const held = await heldTree(session, this.options.treeMemory);
      releaseMemory = held.release;
      const tree = held.tree;
      const { parent, changed, deleted, unsure, chainSize } = await sinceParent(session, tree, incremental);
      // modified_files: since the parent, or (a full checkpoint) since what the session started from.
      const sinceBaseline = parent ? { changed, deleted, unsure } : diffTrees(await session.trees.baselineTree(), tree);
      const record: SessionCheckpoint = {
        checkpointId,
        sessionId: session.id,
        createdAtMs: Date.now(),
        checksumSha256: '',
        installedPackages: await session.sandbox.installedPackages(),
        ...listedPaths(
          workspacePaths([...sinceBaseline.changed.filter((p) => !sinceBaseline.unsure.has(p)), ...sinceBaseline.deleted]).sort(),
          this.options.modifiedFilesBytes,
        ),
        workspaceId: session.workspaceId,
        userId: session.userId,
        config: session.config,
        parentCheckpointId: parent?.id ?? '',
        sizeBytes: 0,
        storageUrl: this.options.store.urlOf(checkpointId),
      };
      // An archive is at most what it holds (stored, not deflated) plus its headers.
      reservation = this.options.diskBudget?.reserve(archiveBound(tree, parent ? changed : undefined), `the checkpoint of session ${quoted(sessionId)}`);
      const roots = { workspace: session.sandbox.workspace, env: session.sandbox.environment };
      const written = await writeArchive(temporary, roots, tree, parent ? changed : [...tree.keys()], parent ? deleted : [], {
        ...record,
        checksumSha256: undefined,
      });
      record.checksumSha256 = written.sha256;
      record.sizeBytes = written.size;
      await this.options.store.save(record, temporary);
      // Saved: what follows cannot undo it. A tree not written beside the record (a full disk)
      // costs a restarted worker the next incremental checkpoint's parent: it is a full one.
      await session
        .rememberCheckpoint({ id: checkpointId, tree, chainLength: (parent?.chainLength ?? 0) + 1, chainSize })
        .catch((err: unknown) =>
          session.logger.error('checkpoint saved, but its tree was not written', { checkpoint_id: checkpointId, error: describeThrown(err) }),
        );
      session.logger.info('checkpoint created', { checkpoint_id: checkpointId, size_bytes: written.size, incremental: parent !== undefined });
      metrics.checkpointSeconds.observe({ operation: 'checkpoint' }, secondsSince(started));
      metrics.checkpointBytes.inc({ operation: 'checkpoint' }, written.size);
      await this.applyRetention(session.id).catch((err: Error) => session.logger.warn('checkpoint retention failed', { error: err.message }));
      return record;
    } catch (err) {
      await rm(temporary, { force: true });
      if (err instanceof WorkerError) throw err;
      // Destroyed meanwhile (while it waited in line, or its files went from under the walk).
      if (session.state === SessionState.SESSION_STATE_TERMINATING) throw errors.invalidSessionState(sessionId, 'TERMINATING', 'checkpoint');
      if (isDiskFull(err)) throw errors.tooLarge(`disk full: no space left to write checkpoint of session ${quoted(sessionId)}; nothing was kept`);
      session.logger.error('checkpoint failed', { error: describeThrown(err) });
      throw errors.archiveFailed(`could not write the checkpoint (${faultOf(err)}); nothing was kept`);
    } finally {
      reservation?.release();
      releaseMemory?.();
      session.endCheckpoint();
    }
  }

  /**
   * A new session with the checkpoint's workspace, packages, workspace_id, user_id and config.
   * Given up (its session removed) when `signal` aborts: the client cancelled or its deadline passed.
   */
  async restore(checkpointId: string, signal?: AbortSignal): Promise<{ session: Session; record: SessionCheckpoint }> {
    try {
      return await this.restoreChain(checkpointId, signal);
    } catch (err) {
      if (signal?.aborted && !(err instanceof WorkerError)) throw errors.restoreCancelled(checkpointId);
      throw err;
    }
  }

  private async restoreChain(checkpointId: string, signal: AbortSignal | undefined): Promise<{ session: Session; record: SessionCheckpoint }> {
    const started = performance.now();
    const { record, chain } = await this.chainOf(checkpointId);
    const fetched: FetchedArchive[] = [];
    let releaseMemory: (() => void) | undefined;
    try {
      await this.fetchChain(chain, fetched, signal);
      const { named, directoryBytes } = await directoriesOf(chain, fetched);
      releaseMemory = await this.holdForRestore(checkpointId, named, directoryBytes, signal);
      const archives = await this.openChain(chain, fetched, signal);
      signal?.throwIfAborted();
      const session = await this.options.pool.create({ workspaceId: record.workspaceId, userId: record.userId, config: sessionConfigOf(record.config) });
      try {
        const roots = { workspace: session.sandbox.workspace, env: session.sandbox.environment };
        const owners = { workspace: session.sandbox.owner, env: session.sandbox.owner };
        // What a new session's workspace starts with (Go's go.mod) is not the checkpoint's.
        await emptyTree(roots.workspace);
        for (const { checkpointId: id, archive } of archives) {
          await extractArchive(archive, roots, owners, signal).catch((err: unknown) => {
            if (err instanceof ZipFormatError) throw errors.checkpointDamaged(Status.DATA_LOSS, id, `its archive is damaged (${err.message})`);
            throw err;
          });
        }
        const opened = archives.map(({ archive }) => archive);
        await restoreDirectoryTimes(opened, roots);
        const tree = await sessionTree(session, MAX_LONG_PATHS_RESTORED);
        await session.trees.rememberBaseline(tree);
        await session.rememberCheckpoint({
          id: record.checkpointId,
          tree,
          chainLength: chain.length,
          // Its paths: at most its directories' bytes less the fixed part of each entry's header.
          chainSize: { entries: named, pathBytes: Math.max(0, directoryBytes - named * ZIP_DIRECTORY_HEADER_BYTES) },
        });
        // Its client gone by now (cancelled, or past its deadline) would never hear of the session: it goes.
        signal?.throwIfAborted();
      } catch (err) {
        await this.options.pool.destroy(session.id, signal?.aborted ? 'restore cancelled' : 'restore failed').catch(() => undefined);
        if (err instanceof WorkerError || signal?.aborted) throw err;
        if (isDiskFull(err)) throw errors.tooLarge(`disk full: no space left to restore checkpoint ${quoted(checkpointId)}; nothing was kept`);
        throw errors.archiveFailed(`could not extract checkpoint ${quoted(checkpointId)} (${faultOf(err)}); nothing was kept`);
      }
      session.logger.info('session restored', { checkpoint_id: checkpointId, chain: chain.length });
      metrics.checkpointSeconds.observe({ operation: 'restore' }, secondsSince(started));
      metrics.checkpointBytes.inc(
        { operation: 'restore' },
        chain.reduce((bytes, link) => bytes + link.sizeBytes, 0),
      );
      return { session, record };
    } finally {
      releaseMemory?.();
      for (const archive of fetched) await archive.release();
    }
  }

  /** Each archive of `chain` fetched (added to `fetched`, for the caller to release) and checked against its checksum. */
  private async fetchChain(chain: SessionCheckpoint[], fetched: FetchedArchive[], signal: AbortSignal | undefined): Promise<void> {
    for (const link of chain) {
      signal?.throwIfAborted();
      const archive = await this.options.store.fetch(link.checkpointId).catch((err: unknown) => {
        if (err instanceof MissingArchiveError)
          throw errors.checkpointDamaged(Status.NOT_FOUND, link.checkpointId, 'its archive is missing from the checkpoint store');
        throw errors.archiveFailed(`the archive of checkpoint ${quoted(link.checkpointId)} cannot be fetched (${faultOf(err)})`);
      });
      fetched.push(archive);
      if ((await sha256Of(archive.path)) !== link.checksumSha256) throw errors.checkpointCorrupted(link.checkpointId);
    }
  }

  /**
   * The worker's heap a restore of `named` entries takes (the chain's directories, then the
   * restored tree), held. A chain larger than checkpoints make now (made before MAX_CHAIN_SIZE
   * bounded chains) is refused when that is more than the worker's whole heap (trees may take
   * half of it, but one restore goes alone); any other is restored, alone if it must.
   */
  private async holdForRestore(checkpointId: string, named: number, directoryBytes: number, signal: AbortSignal | undefined): Promise<() => void> {
    const restored = workingBytes(Math.min(named, MAX_CHECKPOINT_ENTRIES), Math.min(directoryBytes, MAX_CHECKPOINT_PATH_BYTES));
    const bytes = openedBytes(named, directoryBytes) + restored;
    // Every archive holds two files of its own besides the session's entries.
    const madeNow = named <= MAX_CHAIN_SIZE.entries + 2 * MAX_CHAIN && directoryBytes <= MAX_CHAIN_SIZE.pathBytes + named * DIRECTORY_BYTES_PER_ENTRY;
    if (!madeNow && bytes > 2 * this.options.treeMemory.limitBytes)
      throw errors.tooLarge(
        `checkpoint ${quoted(checkpointId)} and its parents name ${named} entries in all, more than this worker can hold at once to restore them`,
      );
    return this.options.treeMemory.hold(bytes, signal);
  }

  /**
   * The archives of `chain` (as `fetched`) opened, every entry checked: all before anything is
   * extracted.
   */
  private async openChain(
    chain: SessionCheckpoint[],
    fetched: FetchedArchive[],
    signal: AbortSignal | undefined,
  ): Promise<{ checkpointId: string; archive: OpenedArchive }[]> {
    const archives: { checkpointId: string; archive: OpenedArchive }[] = [];
    // Paths past MAX_PATH_BYTES (made before checkpoints refused them) are counted over the whole chain.
    const longPaths = { left: MAX_LONG_PATHS_RESTORED };
    for (const [i, link] of chain.entries()) {
      signal?.throwIfAborted();
      archives.push({
        checkpointId: link.checkpointId,
        archive: await openArchive(fetched[i]!.path, signal, longPaths).catch((err: unknown) => {
          if (err instanceof ZipFormatError) throw errors.checkpointDamaged(Status.DATA_LOSS, link.checkpointId, `its archive cannot be read (${err.message})`);
          throw err;
        }),
      });
    }
    return archives;
  }

  /**
   * The checkpoint (`record`) and its parents, oldest first (`chain`, ending with `record`); each
   * missing or damaged link is refused with what is wrong with which checkpoint.
   */
  private async chainOf(checkpointId: string): Promise<{ record: SessionCheckpoint; chain: SessionCheckpoint[] }> {
    if (!checkpointId) throw errors.invalidArgument('checkpoint_id is required');
    const record = await this.readLink(checkpointId);
    if (!record) throw errors.checkpointNotFound(checkpointId);
    const chain = [record];
    for (let child = record; child.parentCheckpointId;) {
      const id = child.parentCheckpointId;
      if (chain.some((r) => r.checkpointId === id) || chain.length >= MAX_CHAIN)
        throw errors.checkpointDamaged(Status.INTERNAL, checkpointId, 'its chain of parents loops or is too long');
      const link = await this.readLink(id);
      if (!link) throw errors.checkpointDamaged(Status.NOT_FOUND, child.checkpointId, `its parent ${quoted(id)} is no longer in the checkpoint store`);
      chain.unshift(link);
      child = link;
    }
    return { record, chain };
  }

  /** One checkpoint's record, its config checked; undefined when the store has none. */
  private async readLink(id: string): Promise<SessionCheckpoint | undefined> {
    const damaged = (why: string) => errors.checkpointDamaged(Status.INTERNAL, id, `its record is damaged (${why})`);
    const record = await this.options.store.record(id).catch((err: unknown) => {
      if (err instanceof DamagedRecordError) throw damaged(err.message);
      throw errors.archiveFailed(`the record of checkpoint ${quoted(id)} cannot be read (${faultOf(err)})`);
    });
    if (!record) return undefined;
    try {
      return { ...record, config: storedSessionConfig(record.config) };
    } catch (err) {
      throw damaged(faultOf(err));
    }
  }

  /** Keeps the session's newest checkpoints and every parent they need, and any other stored checkpoint needs; removes the rest. */
  private async applyRetention(sessionId: string): Promise<void> {
    const all = await this.options.store.list();
    const byId = new Map(all.map((r) => [r.checkpointId, r]));
    const mine = all.filter((r) => r.sessionId === sessionId).sort((a, b) => b.createdAtMs - a.createdAtMs);
    const keep = new Set<string>();
    const keepChain = (from: CheckpointRecord | undefined) => {
      for (let r = from; r && !keep.has(r.checkpointId); r = byId.get(r.parentCheckpointId)) keep.add(r.checkpointId);
    };
    for (const record of mine.slice(0, this.options.keepPerSession)) keepChain(record);
    // Another session's checkpoints may build on this one's (a fork's, a restored session's): their parents stay.
    for (const record of all) if (record.sessionId !== sessionId) keepChain(byId.get(record.parentCheckpointId));
    for (const record of mine) if (!keep.has(record.checkpointId)) await this.options.store.remove(record.checkpointId);
  }
}
