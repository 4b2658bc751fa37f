import { constants, openSync } from 'node:fs';
import { lstat, mkdir, open, readlink, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import type { Owner } from './owner.js';

/**
 * File work on a tree a less trusted party can change while the worker works in it (a session's
 * workspace and environment: its code runs concurrently and may swap any directory for a
 * symlink at any moment). Nothing here resolves a path the session controls as a whole: every
 * component is opened relative to the descriptor of its parent, without following links, the
 * way openat(2) with O_NOFOLLOW does. Node has no openat, so a descriptor's directory is named
 * `/proc/self/fd/<fd>/<name>`: the kernel jumps to the open directory itself (whatever path it
 * now has) and looks up only `name` there. A rename or a symlink made meanwhile can therefore
 * fail an operation but never send it outside the tree.
 *
 * Opens add O_NONBLOCK where a session-made FIFO could otherwise block a libuv thread for ever.
 */

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Symlinks followed in one resolution before giving up, as the kernel's own limit. */
const MAX_LINK_HOPS = 40;

/** A resolution would leave the tree (a symlink pointing out, `..` above the root). */
export class OutsideTreeError extends Error {
  override name = 'OutsideTreeError';
  constructor(readonly reason: string) {
    super(reason);
  }
}

/**
 * The path naming `name` inside the open directory `dir` (a handle or a descriptor), looked up by
 * the kernel from the descriptor. A name given as bytes (any a Linux name can hold, UTF-8 or not:
 * storage/byteNames.ts) gives the path as bytes.
 */
export function at(dir: FileHandle | number, name: string): string;
export function at(dir: FileHandle | number, name: Buffer): Buffer;
export function at(dir: FileHandle | number, name: string | Buffer): string | Buffer;
export function at(dir: FileHandle | number, name: string | Buffer): string | Buffer {
  const text = typeof name === 'string' ? name : name.toString('latin1');
  if (text === '' || text === '.' || text === '..' || text.includes('/') || text.includes('\0'))
    throw new Error(`not a single path component: ${JSON.stringify(text)}`);
  const fd = typeof dir === 'number' ? dir : dir.fd;
  return typeof name === 'string' ? `/proc/self/fd/${fd}/${name}` : Buffer.concat([Buffer.from(`/proc/self/fd/${fd}/`), name]);
}

/** Opens a directory the worker itself trusts the path of (its own data directory). */
export function openTrustedDirectory(path: string): Promise<FileHandle> {
  return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/** Opens `name` in `dir` as a directory; a symlink or a file there fails (ENOTDIR/ELOOP). */
export function openChildDirectory(dir: FileHandle, name: string | Buffer): Promise<FileHandle> {
  return open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/**
 * openChildDirectory as one synchronous call, for walks that visit thousands of directories (a
 * thread-pool round trip each would cost more than the call). The caller closes the descriptor.
 */
export function openChildDirectorySync(dir: FileHandle | number, name: string | Buffer): number {
  return openSync(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/** Opens `name` in `dir` for reading without following a link or blocking on a FIFO. */
export function openChildForReading(dir: FileHandle, name: string): Promise<FileHandle> {
  return open(at(dir, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
}

/** Errno of a failed fs call, or undefined. */
export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** What a path names: an entry (maybe missing) of a directory, its lstat when it exists. */
export interface Located {
  dir: FileHandle;
  name: string;
  stat: Stats | undefined;
}

/**
 * Client-relative paths resolved inside one tree (a session's workspace), following the links
 * the session made only as far as they stay inside it. An absolute link target counts as inside
 * when it starts with one of the tree's `aliases` (`/workspace`, as the session's code sees it).
 * Every descriptor it opens is closed by close().
 */
export class TreeResolver {
  private readonly opened: FileHandle[] = [];

  private constructor(
    private readonly root: FileHandle,
    private readonly aliases: string[],
  ) {
    this.opened.push(root);
  }

  /** `rootPath` must be a path the worker trusts (inside its data directory, not session-made). */
  static async open(rootPath: string, aliases: string[]): Promise<TreeResolver> {
    return new TreeResolver(await openTrustedDirectory(rootPath), aliases);
  }

  async close(): Promise<void> {
    await Promise.all(this.opened.splice(0).map((fd) => fd.close().catch(() => undefined)));
  }

  /** The directory `segments` names, links inside followed; the root for no segments. */
  async directory(segments: string[]): Promise<FileHandle> {
    return innermost(await this.walk(segments, undefined, [this.root], { hops: 0 }));
  }

  /**
   * The directory holding what `segments` names and its name there, following links inside the
   * tree (a final link too, so a write through a link inside writes its target). With `create`,
   * missing directories on the way are made, owned by `create.owner`. Undefined when the path
   * names a directory by the root or `..` (which has no single parent entry here).
   */
  async locate(segments: string[], create?: { owner: Owner | undefined }): Promise<Located | undefined> {
    const budget = { hops: 0 };
    let stack = [this.root];
    let queue = segments.filter((s) => s !== '' && s !== '.');
    for (;;) {
      const name = queue.at(-1);
      if (name === undefined) return undefined;
      stack = await this.walk(queue.slice(0, -1), create, stack, budget);
      if (name === '..') {
        await this.walk(['..'], undefined, stack, budget); // refuses leaving the root
        return undefined;
      }
      const dir = innermost(stack);
      const stat = await lstat(at(dir, name)).catch((err: unknown) => {
        if (errnoOf(err) === 'ENOENT') return undefined;
        throw err;
      });
      if (!stat?.isSymbolicLink()) return { dir, name, stat };
      countHop(budget);
      const target = await this.linkTarget(dir, name);
      if (target.absolute) stack = [this.root];
      queue = target.segments;
    }
  }

  /**
   * Opens each of `segments` as a directory below the last of `start`, following links inside
   * the tree; `..` goes back up the descriptors already open, never above the root.
   */
  private async walk(
    segments: string[],
    create: { owner: Owner | undefined } | undefined,
    start: FileHandle[],
    budget: { hops: number },
  ): Promise<FileHandle[]> {
    const stack = [...start];
    const queue = segments.filter((s) => s !== '' && s !== '.');
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === '..') {
        if (stack.length === 1) throw new OutsideTreeError('it resolves outside the workspace (through a symlink)');
        stack.pop();
        continue;
      }
      const dir = innermost(stack);
      const opened = await this.openOrMake(dir, name, create);
      if (opened) {
        stack.push(opened);
        continue;
      }
      // Not a directory: a link to follow, or a file where a directory was wanted.
      if (!(await lstat(at(dir, name))).isSymbolicLink()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      countHop(budget);
      const target = await this.linkTarget(dir, name);
      if (target.absolute) stack.splice(1);
      queue.unshift(...target.segments);
    }
    return stack;
  }

  /** The directory `name` in `dir`, made if missing and asked to; undefined when it is not a directory. */
  private async openOrMake(dir: FileHandle, name: string, create: { owner: Owner | undefined } | undefined): Promise<FileHandle | undefined> {
    try {
      return this.keep(await openChildDirectory(dir, name));
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOTDIR' || code === 'ELOOP') return undefined;
      if (code !== 'ENOENT' || !create) throw err;
    }
    await mkdir(at(dir, name), { mode: 0o755 }).catch((err: unknown) => {
      if (errnoOf(err) !== 'EEXIST') throw err;
    });
    const made = await this.openOrMake(dir, name, undefined);
    // Only what was just made gets the owner; a directory swapped in meanwhile is the session's own.
    if (made && create.owner) await made.chown(create.owner.uid, create.owner.gid);
    return made;
  }

  /** A link's target as segments; an absolute one must lie in an alias of the root. */
  private async linkTarget(dir: FileHandle, name: string): Promise<{ absolute: boolean; segments: string[] }> {
    const target = await readlink(at(dir, name));
    if (!target.startsWith('/')) return { absolute: false, segments: target.split('/').filter((s) => s !== '' && s !== '.') };
    const alias = this.aliases.find((a) => target === a || target.startsWith(`${a}/`));
    if (alias === undefined) throw new OutsideTreeError('it resolves outside the workspace (through a symlink)');
    return {
      absolute: true,
      segments: target
        .slice(alias.length)
        .split('/')
        .filter((s) => s !== '' && s !== '.'),
    };
  }

  private keep(fd: FileHandle): FileHandle {
    this.opened.push(fd);
    return fd;
  }
}

/** The innermost directory of a walk: its stack always holds the root at least (`..` never pops that). */
function innermost(stack: readonly FileHandle[]): FileHandle {
  const dir = stack.at(-1);
  if (!dir) throw new Error('a directory walk lost its root');
  return dir;
}

function countHop(budget: { hops: number }): void {
  if (++budget.hops > MAX_LINK_HOPS) throw Object.assign(new Error('too many levels of symbolic links'), { code: 'ELOOP' });
}

/**
 * Runs `work` on the directory `segments` names below `root`, opened component by component
 * without following any link (a link on the way fails with ENOTDIR). With `create`, missing
 * directories are made, owned by `create.owner`. The descriptors opened are closed afterwards.
 */
export async function inDirectoryNoFollow<T>(
  root: FileHandle,
  segments: readonly (string | Buffer)[],
  work: (dir: FileHandle) => Promise<T>,
  create?: { owner: Owner | undefined },
): Promise<T> {
  const opened: FileHandle[] = [];
  try {
    let dir = root;
    for (const name of segments) {
      dir = await openChildDirectory(dir, name).catch(async (err: unknown) => {
        if (errnoOf(err) !== 'ENOENT' || !create) throw err;
        await mkdir(at(dir, name), { mode: 0o755 }).catch((e: unknown) => {
          if (errnoOf(e) !== 'EEXIST') throw e;
        });
        const made = await openChildDirectory(dir, name);
        if (create.owner)
          await made.chown(create.owner.uid, create.owner.gid).catch(async (e: unknown) => {
            await made.close();
            throw e;
          });
        return made;
      });
      opened.push(dir);
    }
    return await work(dir);
  } finally {
    await Promise.all(opened.map((fd) => fd.close().catch(() => undefined)));
  }
}

/**
 * Opens the regular file `segments` names below `root` for reading, following no link and
 * blocking on nothing; undefined when it is gone or is no longer a regular file.
 */
export async function openRegularFileNoFollow(root: FileHandle, segments: string[]): Promise<FileHandle | undefined> {
  const name = segments.at(-1);
  if (name === undefined) return undefined; // the root itself: a directory
  try {
    return await inDirectoryNoFollow(root, segments.slice(0, -1), async (dir) => {
      const file = await openChildForReading(dir, name);
      if ((await file.stat()).isFile()) return file;
      await file.close();
      return undefined;
    });
  } catch (err) {
    if (['ENOENT', 'ENOTDIR', 'ELOOP', 'ENXIO'].includes(errnoOf(err) ?? '')) return undefined;
    throw err;
  }
}

/**
 * The regular file `segments` names below `rootPath` (a directory the worker trusts the path of),
 * read whole as UTF-8 following no link; undefined when it is missing, not a regular file, or
 * larger than `maxBytes` (what a less trusted writer left is read only when small).
 */
export async function readSmallFileNoFollow(rootPath: string, segments: string[], maxBytes: number): Promise<string | undefined> {
  const root = await openTrustedDirectory(rootPath).catch(() => undefined);
  if (!root) return undefined;
  try {
    const file = await openRegularFileNoFollow(root, segments);
    if (!file) return undefined;
    try {
      if ((await file.stat()).size > maxBytes) return undefined;
      const text = await file.readFile('utf8');
      return Buffer.byteLength(text) > maxBytes ? undefined : text;
    } finally {
      await file.close();
    }
  } finally {
    await root.close();
  }
}
