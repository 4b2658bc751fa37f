import { closeSync, lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { lstat, readdir, type FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { errors } from '../errors.js';
import { at, inDirectoryNoFollow, openChildDirectorySync, openTrustedDirectory } from './beneath.js';
import { byteString, pathArg, textOf, type ByteString } from './byteNames.js';
import { letOthersRun } from './letOthersRun.js';

/**
 * What a checkpoint remembers of one path, to tell later whether it changed. mtime and size a
 * session can set back (`cp -p`, `tar x`, `touch -d`) after changing the bytes; ctime and the
 * inode it cannot: the kernel sets ctime on every write, chmod or rename, and a file replaced
 * by another has another inode.
 */
export interface TreeEntry {
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  mode: number;
  /** A symlink's target, a byte string (storage/byteNames.ts). */
  target?: ByteString;
  /**
   * Changed within CLOCK_SLACK_MS of the scan: the kernel's file clock ticks coarsely, so a write
   * just after the scan can leave ctime as it was; such an entry counts as changed next time.
   */
  racy?: true;
}

/** Every path under a root (relative, '/'-separated byte strings: storage/byteNames.ts), without following symlinks. */
export type Tree = Map<ByteString, TreeEntry>;

/** How far the kernel's coarse file clock (a tick: 1 to 10 ms) may trail the worker's clock, with room to spare. */
const CLOCK_SLACK_MS = 50;

/** Entries one checkpoint may hold: each costs the worker memory while it is written. */
export const MAX_CHECKPOINT_ENTRIES = 500_000;

/**
 * Longest path of a checkpoint entry, its workspace/ or env/ and a directory's '/' included. V8
 * hashes a longer string by its length alone: paths of one length past it (a deep directory's
 * files) would all fall in one bucket of every Map keyed by them, each lookup comparing tens of
 * kilobytes with every other: minutes of the worker's event loop for a few thousand files.
 */
export const MAX_PATH_BYTES = 16_383;

/**
 * Paths past MAX_PATH_BYTES a restored session may hold: a release before it checkpointed
 * paths up to a zip name's 65,535 bytes, and what it reported saved must restore. So few that
 * even all of one length (one hash bucket) cost the worker little; its next checkpoint names
 * the first of them until they are shortened.
 */
export const MAX_LONG_PATHS_RESTORED = 256;

/** The paths of one checkpoint's entries, all together: what its tree holds in the worker's memory, and its archive's directory. */
export const MAX_CHECKPOINT_PATH_BYTES = 64 << 20;

/** Directory levels the worker descends in a session's tree; deeper levels only the session uses. */
export const MAX_TREE_DEPTH = 256;

/** lstat calls one walk keeps in flight: a huge directory must not fill the libuv threadpool's queue ahead of other requests. */
const LSTAT_BATCH = 32;

/**
 * The entries of an open directory with their lstat, every name as its bytes (byte strings,
 * storage/byteNames.ts: a name that is not UTF-8 is listed too), sorted by those bytes; entries
 * gone meanwhile are left out.
 */
export async function listDirectory(dir: FileHandle): Promise<{ name: ByteString; st: Stats }[]> {
  const names = (await readdir(`/proc/self/fd/${dir.fd}`, { encoding: 'buffer' }).catch(() => [] as Buffer[])).map(byteString).sort();
  const entries: { name: ByteString; st: Stats }[] = [];
  for (let i = 0; i < names.length; i += LSTAT_BATCH) {
    const batch = await Promise.all(
      names.slice(i, i + LSTAT_BATCH).map(async (name) => ({ name, st: await lstat(at(dir, pathArg(name))).catch(() => undefined) })),
    );
    for (const entry of batch) if (entry.st) entries.push({ name: entry.name, st: entry.st });
  }
  return entries;
}

/** Longest a walk holds the event loop with its synchronous calls before it lets other work run. */
const WALK_SLICE_MS = 5;

/**
 * Visits every entry under the directory at `rootPath` (a path the worker trusts), depth first,
 * names sorted, as byte strings (storage/byteNames.ts): every name Linux allows is visited.
 * Each directory is opened from its parent's descriptor without following links
 * (storage/beneath.ts), so the session changing the tree meanwhile can hide entries from the
 * walk but never lead it outside. `tooDeep` is called for a directory at MAX_TREE_DEPTH, whose
 * contents are not visited; paths in `skip` (relative) are neither visited nor entered.
 *
 * The calls are synchronous (an lstat is a few µs, a thread-pool round trip several times that,
 * and a checkpoint of a large workspace makes one per file), in slices of WALK_SLICE_MS between
 * which other work runs. `dir` is the descriptor of the directory holding the entry.
 */
export async function walkTree(
  rootPath: string,
  visit: (relPath: string, st: Stats, dir: number, name: string) => void,
  tooDeep: (relPath: string) => void = () => undefined,
  skip: ReadonlySet<string> = new Set(),
): Promise<void> {
  const root = await openTrustedDirectory(rootPath).catch(() => undefined);
  if (!root) return;
  let sliceEnd = performance.now() + WALK_SLICE_MS;
  const walk = async (dir: number, rel: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = readdirSync(`/proc/self/fd/${dir}`, { encoding: 'latin1' }).sort();
    } catch {
      return; // gone meanwhile
    }
    for (const name of names) {
      if (performance.now() > sliceEnd) {
        await letOthersRun();
        sliceEnd = performance.now() + WALK_SLICE_MS;
      }
      const relPath = rel ? `${rel}/${name}` : name;
      if (skip.has(relPath)) continue;
      const st = lstatSync(at(dir, pathArg(name)), { throwIfNoEntry: false });
      if (!st) continue;
      visit(relPath, st, dir, name);
      if (!st.isDirectory()) continue;
      if (depth + 1 >= MAX_TREE_DEPTH) {
        tooDeep(relPath);
        continue;
      }
      let child: number;
      try {
        child = openChildDirectorySync(dir, pathArg(name));
      } catch {
        continue; // gone or swapped meanwhile
      }
      try {
        await walk(child, relPath, depth + 1);
      } finally {
        closeSync(child);
      }
    }
  };
  try {
    await walk(root.fd, '', 0);
  } finally {
    await root.close();
  }
}

/** What the walks of one checkpoint met, counted across its trees, and the bounds they are held to. */
export interface WalkCounts {
  /** Bytes of the paths met (and of links' targets, with `targetsCounted`), against MAX_CHECKPOINT_PATH_BYTES. */
  bytes: number;
  /** Whether links' targets count in `bytes` (a checkpoint's; a restore's walk takes what was saved before they did). */
  targetsCounted?: boolean;
  /** Paths past MAX_PATH_BYTES still allowed (none for a checkpoint; a restore's made before the bound). */
  longAllowed: number;
  /** Entries met, against `entriesHeld`. */
  entries?: number;
  /** Entries the walks were expected to meet at most: past them, a BeyondHeldError. */
  entriesHeld?: number;
}

/** A walk met more entries than were held for it (a checkpoint's share of the worker's heap: sessions/treeMemory.ts). */
export class BeyondHeldError extends Error {
  override name = 'BeyondHeldError';
}

/**
 * The tree under `root` for a checkpoint, but for `skip` (relative paths, not entered); refuses
 * trees nested deeper than MAX_TREE_DEPTH. `paths` counts what the walks of one checkpoint met
 * (WalkCounts).
 */
export async function scanTree(root: string, prefix = '', skip: readonly string[] = [], paths: WalkCounts = { bytes: 0, longAllowed: 0 }): Promise<Tree> {
  const tree: Tree = new Map();
  const racyAfter = Date.now() - CLOCK_SLACK_MS;
  const entry = (type: TreeEntry['type'], st: Stats, size: number): TreeEntry => {
    const it: TreeEntry = { type, size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, mode: st.mode & 0o7777 };
    if (st.ctimeMs >= racyAfter) it.racy = true;
    return it;
  };
  await walkTree(
    root,
    (relPath, st, dir, name) => {
      if (tree.size >= MAX_CHECKPOINT_ENTRIES)
        throw errors.tooLarge(`the session holds more than ${MAX_CHECKPOINT_ENTRIES} files and directories, more than a checkpoint holds`);
      paths.entries = (paths.entries ?? 0) + 1;
      if (paths.entries > (paths.entriesHeld ?? Infinity)) throw new BeyondHeldError(`more than the ${paths.entriesHeld} entries held`);
      // Lengths only: a path past the limits is never made a string of its own (nor hashed).
      const length = prefix.length + relPath.length;
      if (length + 1 > MAX_PATH_BYTES && paths.longAllowed-- <= 0)
        throw errors.cannotArchive(
          textOf(`${prefix}${relPath.slice(0, 300)}`),
          `its path is ${length} bytes long, more than a checkpoint holds (${MAX_PATH_BYTES - 1}); shorten it and checkpoint again`,
        );
      // A link's target is held beside its path (lstat gives its length).
      paths.bytes += length + (paths.targetsCounted && st.isSymbolicLink() ? st.size : 0);
      if (paths.bytes > MAX_CHECKPOINT_PATH_BYTES)
        throw errors.tooLarge(
          `the paths of the session's files and directories, and its links' targets, come to more than ${MAX_CHECKPOINT_PATH_BYTES >> 20} MiB, more than a checkpoint holds`,
        );
      if (st.isSymbolicLink()) {
        let target: string | undefined;
        try {
          target = readlinkSync(at(dir, pathArg(name)), { encoding: 'latin1' });
        } catch {
          // gone meanwhile
        }
        if (target !== undefined) tree.set(`${prefix}${relPath}`, { ...entry('symlink', st, 0), target });
      } else if (st.isDirectory()) {
        tree.set(`${prefix}${relPath}`, entry('directory', st, 0));
      } else if (st.isFile()) {
        tree.set(`${prefix}${relPath}`, entry('file', st, st.size));
      } else {
        throw errors.cannotArchive(textOf(`${prefix}${relPath}`), `it is a ${kindOf(st)}, which a checkpoint cannot hold (remove it and checkpoint again)`);
      }
    },
    (relPath) => {
      throw errors.tooLarge(
        `${JSON.stringify(textOf(`${prefix}${relPath}`).slice(0, 200))}… nests directories deeper than ${MAX_TREE_DEPTH} levels, more than a checkpoint holds`,
      );
    },
    new Set(skip),
  );
  return tree;
}

/** Entries a size measurement visits at most; past it the size is a lower bound. */
const MAX_MEASURED_ENTRIES = 100_000;

/**
 * Bytes of what is under `root`, a lower bound for trees past MAX_MEASURED_ENTRIES entries or
 * MAX_TREE_DEPTH levels: usage reports must stay cheap whatever a session holds.
 */
export async function treeSize(root: string): Promise<number> {
  let bytes = 0;
  let entries = 0;
  await walkTree(root, (_relPath, st) => {
    if (++entries > MAX_MEASURED_ENTRIES) throw new MeasuredEnough();
    if (!st.isDirectory()) bytes += st.size;
  }).catch((err: unknown) => {
    if (!(err instanceof MeasuredEnough)) throw err;
  });
  return bytes;
}

class MeasuredEnough extends Error {}

/** A FIFO, socket or device's kind, for a message. */
function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  return 'special file';
}

/**
 * How `now` compares with `before`: a directory by its mode and mtime (its entries are compared
 * themselves); anything else by what a session sets (size, mtime, mode, target, a new inode) and
 * by ctime, which it cannot set back. A change of ctime alone is `unsure`: bytes rewritten behind
 * a kept size and mtime, or only a chown (the worker gives a session's files a new uid when a
 * restart gives it another).
 */
function compare(before: TreeEntry, now: TreeEntry): 'same' | 'changed' | 'unsure' {
  if (before.type !== now.type || before.mode !== now.mode) return 'changed';
  if (now.type === 'directory') return before.mtimeMs === now.mtimeMs ? 'same' : 'changed';
  if (before.size !== now.size || before.mtimeMs !== now.mtimeMs || before.ino !== now.ino || before.target !== now.target) return 'changed';
  return before.ctimeMs !== now.ctimeMs || before.racy ? 'unsure' : 'same';
}

/**
 * Paths added or changed in `now` since `before`, and paths gone from it. `changed` also holds
 * the entries that may have changed unseen: with only their ctime changed, or racy in `before`
 * (changed within the file clock's tick of its scan). Those are saved again, and listed in
 * `unsure` so they are not reported as modified.
 */
export function diffTrees(before: Tree, now: Tree): { changed: string[]; deleted: string[]; unsure: Set<string> } {
  const changed: string[] = [];
  const deleted: string[] = [];
  const unsure = new Set<string>();
  for (const [path, entry] of now) {
    const old = before.get(path);
    const how = old ? compare(old, entry) : 'changed';
    if (how === 'same') continue;
    if (how === 'unsure') unsure.add(path);
    changed.push(path);
  }
  for (const path of before.keys()) if (!now.has(path)) deleted.push(path);
  return { changed, deleted, unsure };
}

/** Names in the directory `segments` below `root`, reached without following links; [] when there is none. */
export async function namesIn(root: string, segments: string[]): Promise<string[]> {
  const top = await openTrustedDirectory(root).catch(() => undefined);
  if (!top) return [];
  try {
    return await inDirectoryNoFollow(top, segments, (dir) => readdir(`/proc/self/fd/${dir.fd}`));
  } catch {
    return [];
  } finally {
    await top.close();
  }
}

/**
 * Whether a symlink at `path` (relative, `top/...`) points, relatively, somewhere inside its own
 * top directory: what a checkpoint keeps and a restore accepts.
 *
 * The kernel resolves a target step by step: in `up/..`, `..` leaves wherever the link `up` led,
 * which the target's text cannot tell. So `..` may only come first, climbing the link's own
 * directories (real ones: entries are made and scanned without following links), and is refused
 * after a name. With every link so checked, each resolves inside its top, even through another.
 */
export function linkStaysWithin(path: string, target: string): boolean {
  if (target.startsWith('/') || target.includes('\0')) return false;
  const steps = target.split('/').filter((step) => step !== '' && step !== '.');
  if (steps.some((step, i) => step === '..' && i > 0 && steps[i - 1] !== '..')) return false;
  const [top] = path.split('/');
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  return resolved === top || resolved.startsWith(`${top}/`);
}
