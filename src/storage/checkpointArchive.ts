import { ZipArchive, type ArchiverError } from 'archiver';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { lchown, mkdir, open as openFile, symlink, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import unzipper from 'unzipper';
import { errors, faultOf, quoted } from '../errors.js';
import { at, errnoOf, inDirectoryNoFollow, openRegularFileNoFollow, openTrustedDirectory } from './beneath.js';
import type { Owner } from './owner.js';
import { linkStaysWithin, type Tree } from './fileTree.js';
import { removeEntry } from './removeTree.js';
import { HashingStream, hashOf } from './hashingStream.js';

/**
 * The checkpoint archive: a zip of `workspace/...` and `env/...` entries (files with their modes,
 * directories, symlinks), `deleted.json` (paths an incremental checkpoint removes) and
 * `checkpoint.json` (its metadata). Written and read as streams: never a whole archive in memory.
 */

export interface ArchiveRoots {
  workspace: string;
  env: string;
}

const DELETED = 'deleted.json';
const METADATA = 'checkpoint.json';
const S_IFLNK = 0o120000;
const S_IFMT = 0o170000;

/** The session's two trees, open: every path below them is opened from these descriptors (storage/beneath.ts). */
interface OpenRoots {
  workspace: FileHandle;
  env: FileHandle;
}

async function openRoots(roots: ArchiveRoots): Promise<OpenRoots> {
  const workspace = await openTrustedDirectory(roots.workspace);
  const env = await openTrustedDirectory(roots.env).catch(async (err: unknown) => {
    await workspace.close();
    throw err;
  });
  return { workspace, env };
}

async function closeRoots(open: OpenRoots): Promise<void> {
  await Promise.all([open.workspace.close(), open.env.close()]);
}

/** `workspace/a/b` → the workspace's descriptor and ['a', 'b']. */
function locate(open: OpenRoots, path: string): { root: FileHandle; segments: string[] } {
  const [top, ...segments] = path.split('/');
  return { root: top === 'workspace' ? open.workspace : open.env, segments };
}

/**
 * A file's bytes as a stream opened only when the archive reads it (thousands of files would
 * not all fit in open descriptors), at most `size` bytes: what the scan saw, not a file the
 * session keeps growing. Gone or changed into something else by then: an empty entry.
 */
function lazyFile(open: OpenRoots, path: string, size: number): Readable {
  return Readable.from(
    (async function* () {
      const { root, segments } = locate(open, path);
      const file = await openRegularFileNoFollow(root, segments);
      if (!file || size === 0) return void (await file?.close());
      try {
        yield* file.createReadStream({ start: 0, end: size - 1, autoClose: false });
      } finally {
        await file.close();
      }
    })(),
    { objectMode: false },
  );
}

/**
 * Writes an archive of the listed paths (keys of `tree`, prefixed workspace/ or env/) to `file`,
 * hashing it as it is written, and fsyncs it. Returns its sha256 and size.
 */
export async function writeArchive(
  file: string,
  roots: ArchiveRoots,
  tree: Tree,
  include: string[],
  deleted: string[],
  metadata: object,
): Promise<{ sha256: string; size: number }> {
  const open = await openRoots(roots);
  try {
    return await writeArchiveFrom(file, open, tree, include, deleted, metadata);
  } finally {
    await closeRoots(open);
  }
}

async function writeArchiveFrom(
  file: string,
  roots: OpenRoots,
  tree: Tree,
  include: string[],
  deleted: string[],
  metadata: object,
): Promise<{ sha256: string; size: number }> {
  // Level 1: checkpoints are written while the session waits; speed over the last few percent.
  const archive = new ZipArchive({ zlib: { level: 1 } });
  const hasher = new HashingStream();
  const output = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  const written = pipeline(archive, hasher, output);
  written.catch(() => undefined);
  archive.on('warning', (err: ArchiverError) => archive.emit('error', err));

  // The pipeline failing (disk full) or a source failing ends the whole write.
  const failed = new Promise<never>((_, reject) => {
    written.catch(reject);
    archive.on('error', reject);
  });
  failed.catch(() => undefined);
  try {
    // One entry at a time: archiver starts reading every appended source at once, and a
    // workspace of many thousand files would otherwise hold as many descriptors.
    for (const path of include) {
      const entry = tree.get(path)!;
      const done = new Promise<void>((resolve) => archive.once('entry', () => resolve()));
      if (entry.type === 'directory') archive.append('', { name: `${path}/`, mode: entry.mode, type: 'directory' });
      else if (entry.type === 'symlink') archive.symlink(path, entry.target!, entry.mode || 0o777);
      else
        archive.append(
          lazyFile(roots, path, entry.size).on('error', (err) => archive.emit('error', err)),
          { name: path, mode: entry.mode, date: new Date(entry.mtimeMs) },
        );
      await Promise.race([done, failed]);
    }
    archive.append(JSON.stringify(deleted), { name: DELETED });
    archive.append(JSON.stringify(metadata, null, 2), { name: METADATA });
    await Promise.race([Promise.all([archive.finalize(), written]), failed]);
  } catch (err) {
    archive.abort();
    throw err;
  }
  const handle = await openFile(file, 'r');
  await handle.sync();
  await handle.close();
  return { sha256: hasher.sha256(), size: hasher.size };
}

/** sha256 of a file, streamed. */
export async function sha256Of(file: string): Promise<string> {
  return (await hashOf(createReadStream(file))).sha256;
}

interface ArchiveEntry {
  path: string;
  kind: 'file' | 'directory' | 'symlink';
  mode: number;
  file: unzipper.File;
}

export interface OpenedArchive {
  entries: ArchiveEntry[];
  deleted: string[];
}

/** A path an archive may name: under workspace/ or env/, relative, no `..`, no NUL. */
export function checkPath(path: string): string {
  const clean = path.replace(/\/+$/, '');
  const parts = clean.split('/');
  if (clean.includes('\0') || clean.includes('\\') || clean.startsWith('/') || parts.includes('..') || parts.includes('.') || parts.includes('')) {
    throw errors.invalidArgument(`checkpoint archive entry ${quoted(path, 200)} would land outside the session`);
  }
  if (!(parts[0] === 'workspace' || parts[0] === 'env') || parts.length < 2) {
    throw errors.invalidArgument(`checkpoint archive entry ${quoted(path, 200)} is not under workspace/ or env/`);
  }
  return clean;
}

/** A symlink may only point (relatively) to somewhere inside its own tree. */
export function checkLink(path: string, target: string): void {
  if (!linkStaysWithin(path, target)) {
    throw errors.invalidArgument(`checkpoint archive symlink ${quoted(path, 200)} points outside the session (${quoted(target, 200)})`);
  }
}

/**
 * Reads an archive's directory and checks every entry before anything is extracted: a name
 * that is absolute, has `..`, or a symlink pointing out refuses the whole archive.
 */
export async function openArchive(file: string): Promise<OpenedArchive> {
  let directory: unzipper.CentralDirectory;
  try {
    directory = await unzipper.Open.file(file);
  } catch (err) {
    throw errors.invalidArgument(`the checkpoint archive cannot be read as a zip (${faultOf(err)})`);
  }
  const entries: ArchiveEntry[] = [];
  let deleted: string[] = [];
  for (const file of directory.files) {
    if (file.path === METADATA) continue;
    if (file.path === DELETED) {
      let list: unknown;
      try {
        list = JSON.parse((await file.buffer()).toString('utf8'));
      } catch {
        throw errors.invalidArgument('checkpoint deletion list is not valid JSON');
      }
      if (!Array.isArray(list) || !list.every((p) => typeof p === 'string')) throw errors.invalidArgument('checkpoint deletion list is malformed');
      deleted = list.map(checkPath);
      continue;
    }
    const path = checkPath(file.path);
    const unixMode = file.externalFileAttributes >>> 16;
    const kind = file.type === 'Directory' || file.path.endsWith('/') ? 'directory' : (unixMode & S_IFMT) === S_IFLNK ? 'symlink' : 'file';
    if (kind === 'symlink') checkLink(path, (await file.buffer()).toString('utf8'));
    entries.push({ path, kind, mode: unixMode & 0o7777, file });
  }
  return { entries, deleted };
}

export interface Owners {
  workspace: Owner | undefined;
  env: Owner | undefined;
}

/**
 * Applies an opened (checked) archive to the roots: its deletions, then its entries. Every path
 * is made from the roots' descriptors without following a link (storage/beneath.ts), so a link
 * in the tree (made by the archive or by the session) never carries a write elsewhere.
 */
export async function extractArchive(archive: OpenedArchive, roots: ArchiveRoots, owners: Owners): Promise<void> {
  const open = await openRoots(roots);
  try {
    await extractInto(archive, open, owners);
  } finally {
    await closeRoots(open);
  }
}

async function extractInto(archive: OpenedArchive, roots: OpenRoots, owners: Owners): Promise<void> {
  const ownerOf = (path: string) => (path.startsWith('workspace/') ? owners.workspace : owners.env);
  const inParent = <T>(path: string, work: (dir: FileHandle, name: string) => Promise<T>) => {
    const { root, segments } = locate(roots, path);
    return inDirectoryNoFollow(root, segments.slice(0, -1), (dir) => work(dir, segments[segments.length - 1]), { owner: ownerOf(path) });
  };
  const place = async (entry: ArchiveEntry) => {
    const owner = ownerOf(entry.path);
    await inParent(entry.path, async (dir, name) => {
      if (entry.kind === 'directory') {
        await mkdir(at(dir, name), { mode: 0o755 }).catch((err: unknown) => {
          if (errnoOf(err) !== 'EEXIST') throw err;
        });
        await inDirectoryNoFollow(dir, [name], async (made) => {
          if (entry.mode) await made.chmod(entry.mode);
          if (owner) await made.chown(owner.uid, owner.gid);
        });
        return;
      }
      await removeEntry(dir, name);
      if (entry.kind === 'symlink') {
        await symlink((await entry.file.buffer()).toString('utf8'), at(dir, name));
        if (owner) await lchown(at(dir, name), owner.uid, owner.gid);
        return;
      }
      const file = await openFile(at(dir, name), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, entry.mode || 0o644);
      try {
        await file.chmod(entry.mode || 0o644);
        if (owner) await file.chown(owner.uid, owner.gid);
      } catch (err) {
        await file.close();
        throw err;
      }
      // The stream owns the descriptor from here and closes it when done.
      await pipeline(entry.file.stream(), file.createWriteStream());
    });
  };

  for (const path of archive.deleted) await inParent(path, (dir, name) => removeEntry(dir, name));
  // Directories first, then files several at a time (each a separate read of the archive), then
  // symlinks, so no file is written through a link made by the same archive.
  for (const entry of archive.entries.filter((e) => e.kind === 'directory')) await place(entry);
  const files = archive.entries.filter((e) => e.kind === 'file');
  let next = 0;
  await Promise.all(
    Array.from({ length: EXTRACT_CONCURRENCY }, async () => {
      while (next < files.length) await place(files[next++]);
    }),
  );
  for (const entry of archive.entries.filter((e) => e.kind === 'symlink')) await place(entry);
}

const EXTRACT_CONCURRENCY = 8;
