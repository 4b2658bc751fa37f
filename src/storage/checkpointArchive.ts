import { once } from 'node:events';
import { closeSync, constants, createReadStream, fchmodSync, fchownSync, fstatSync, futimesSync, lstatSync, mkdirSync, openSync, read, write } from 'node:fs';
import { lchown, lutimes, mkdir, open as openFile, symlink, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { crc32, createDeflateRaw, type DeflateRaw } from 'node:zlib';
import { errors, quoted } from '../errors.js';
import { at, errnoOf, inDirectoryNoFollow, openChildDirectory, openChildDirectorySync, openTrustedDirectory } from './beneath.js';
import { deflateLevel1, EntryFormatError, extractFiles, type ExtractedFile } from './compressionThreads.js';
import { DirectoryCursor } from './directoryCursor.js';
import type { Owner } from './owner.js';
import { bytesOf, byteStringOfText, isUtf8Name, pathArg, textOf, type ByteString } from './byteNames.js';
import type { Tree, TreeEntry } from './fileTree.js';
import { removeEntry } from './removeTree.js';
import { hashOf } from './hashingStream.js';
import {
  readZipDirectory,
  readZipEntry,
  readZipEnd,
  WHOLE_ENTRY_BYTES,
  zipEntryChunks,
  ZipFormatError,
  type ZipDirectoryEntry,
  type ZipDirectoryLimits,
  type ZipEnd,
} from './zipReader.js';
import { MAX_CHECKPOINT_ENTRIES, MAX_LONG_PATHS_RESTORED, MAX_PATH_BYTES } from './fileTree.js';
import { letOthersRun } from './letOthersRun.js';
import { SharedBudget } from '../sharedBudget.js';
import { METHOD_DEFLATE, METHOD_STORE, ZipWriter, type ZipEntry, type ZipEntryHeader } from './zipWriter.js';

/**
 * The checkpoint archive: a zip of `workspace/...` and `env/...` entries (files with their modes,
 * directories, symlinks whatever they point at: a link is data, made again as it was and never
 * followed), `deleted.json` (paths an incremental checkpoint removes) and `checkpoint.json` (its
 * metadata). Names are a session's bytes exactly (storage/byteNames.ts), modification times to
 * the microsecond (the NTFS extra field). Written and read entry by entry (zipWriter.ts, zipReader.ts),
 * a few entries of at most a few MB in memory at once, never a whole archive. Our own zip code
 * rather than archiver and unzipper: those handled one entry at a time, deflated everything
 * (30 MB/s on random data) and read entries through per-entry streams; checkpoint and restore ran
 * at 0.7 and 0.34 of zip -r and unzip.
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

/** The cursors of the session's two trees (storage/directoryCursor.ts). */
interface OpenCursors {
  workspace: DirectoryCursor;
  env: DirectoryCursor;
}

/**
 * `workspace/a/b` → the workspace's descriptor (or cursor) and ['a', 'b'] (byte strings), also as
 * the parent ['a'] and the name 'b'. Every path here lies below a root (checkPath, the tree's scan).
 */
function locate<T>(open: { workspace: T; env: T }, path: ByteString): { root: T; segments: ByteString[]; parent: ByteString[]; name: ByteString } {
  const [top, ...segments] = path.split('/');
  const name = segments.at(-1);
  if (name === undefined) throw new Error(`not a path below workspace/ or env/: ${quoted(textOf(path), 200)}`);
  return { root: top === 'workspace' ? open.workspace : open.env, segments, parent: segments.slice(0, -1), name };
}

/** Files up to this size are read and compressed whole, several at once; larger ones are streamed in chunks of it. */
const WHOLE_FILE_BYTES = 4 << 20;
/** Entries read and compressed ahead of the one being written: the thread pool's four threads busy, memory bounded. */
const READ_AHEAD = 6;
/** Bytes sampled to tell incompressible data (random, already compressed) from the rest. */
const SAMPLE_BYTES = 4096;
/** Above this many bits of entropy per byte a sample is taken as incompressible, and stored. */
const INCOMPRESSIBLE_BITS = 7.5;

const readAsync = promisify(read);
const writeAsync = promisify(write);

/**
 * Whether deflating `bytes` is worth it, from the byte entropy of a sample: deflate at level 1 runs
 * at about 30 MB/s on random data (and gains nothing), at 100 MB/s on text (a third the size).
 */
export function worthDeflating(bytes: Buffer): boolean {
  const sample = bytes.subarray(0, SAMPLE_BYTES);
  if (sample.length < 512) return true;
  const counts = new Uint32Array(256);
  for (const byte of sample) counts[byte]!++; // a byte indexes one of the 256
  let bits = 0;
  for (const count of counts) if (count) bits -= (count / sample.length) * Math.log2(count / sample.length);
  return bits <= INCOMPRESSIBLE_BITS;
}

/** Up to `size` bytes of the open file `fd` from `position`; fewer when it is shorter now. */
async function readUpTo(fd: number, size: number, position: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const { bytesRead } = await readAsync(fd, buffer, filled, size - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/** A file entry ready for the writer: whole and compressed, or open to be streamed. */
type PreparedFile = { whole: ZipEntry } | { streamed: ZipEntryHeader; fd: number; size: number };

/**
 * Opens a file to archive in its directory (storage/beneath.ts rules, through `cursor`): a
 * descriptor, or undefined when it is gone or is no longer a regular file (an empty entry then).
 */
function openSourceFile(cursor: DirectoryCursor, { parent, name }: { parent: ByteString[]; name: ByteString }): number | undefined {
  try {
    const fd = openSync(at(cursor.open(parent), pathArg(name)), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    if (fstatSync(fd).isFile()) return fd;
    closeSync(fd);
    return undefined;
  } catch (err) {
    if (['ENOENT', 'ENOTDIR', 'ELOOP', 'ENXIO'].includes(errnoOf(err) ?? '')) return undefined;
    throw err;
  }
}

/**
 * A file's entry: at most `size` bytes (what the scan saw, not a file the session keeps growing),
 * read whole and deflated on the thread pool when small, else left open for streaming.
 */
async function prepareFile(cursors: OpenCursors, path: string, entry: TreeEntry): Promise<PreparedFile> {
  const { root, ...where } = locate(cursors, path);
  const header: ZipEntryHeader = { name: path, kind: 'file', mode: entry.mode, mtimeMs: entry.mtimeMs, method: METHOD_STORE };
  const fd = entry.size === 0 ? undefined : openSourceFile(root, where);
  if (fd === undefined) return { whole: { ...header, mtimeNs: exactMtime(root, where), crc: 0, size: 0, data: Buffer.alloc(0) } };
  header.mtimeNs = fstatSync(fd, { bigint: true }).mtimeNs;
  if (entry.size > WHOLE_FILE_BYTES) return { streamed: header, fd, size: entry.size };
  let bytes: Buffer;
  try {
    bytes = await readUpTo(fd, entry.size, 0);
  } finally {
    closeSync(fd);
  }
  const crc = crc32(bytes);
  if (worthDeflating(bytes)) {
    const deflated = await deflateLevel1(bytes);
    if (deflated.length < bytes.length) return { whole: { ...header, method: METHOD_DEFLATE, crc, size: bytes.length, data: deflated } };
  }
  return { whole: { ...header, crc, size: bytes.length, data: bytes } };
}

/**
 * The modification time of `name` in `parent`, to the nanosecond (the scan's are doubles, a
 * few hundred ns off); undefined when it is gone.
 */
function exactMtime(cursor: DirectoryCursor, { parent, name }: { parent: ByteString[]; name: ByteString }): bigint | undefined {
  try {
    return lstatSync(at(cursor.open(parent), pathArg(name)), { bigint: true }).mtimeNs;
  } catch {
    return undefined;
  }
}

/**
 * Seconds for futimes that give back `ns` to the microsecond: libuv truncates what it is given to
 * microseconds, and a double of today's seconds is only good to a quarter of one, so the middle
 * of the microsecond is asked for.
 */
function utimesSeconds(ns: bigint): string {
  // Whole microseconds, rounded down (before 1970 too); then half a microsecond away from zero,
  // where libuv's truncation toward zero lands on it either way.
  const us = ns >= 0n ? ns / 1000n : -((-ns + 999n) / 1000n);
  const seconds = Number(us) / 1e6 + (us >= 0n ? 0.5e-6 : -0.5e-6);
  // As a string: Node replaces a negative number (a time before 1970) with now, not a string.
  return String(seconds);
}

/** A large file into the archive chunk by chunk: deflated (one stream) unless its first chunk looks incompressible. */
async function streamFile(zip: ZipWriter, file: { streamed: ZipEntryHeader; fd: number; size: number }): Promise<void> {
  let crc = 0;
  let size = 0;
  let deflater: DeflateRaw | undefined;
  let deflated: Promise<void> = Promise.resolve();
  try {
    for (let position = 0; position < file.size;) {
      const chunk = await readUpTo(file.fd, Math.min(WHOLE_FILE_BYTES, file.size - position), position);
      if (chunk.length === 0) break;
      if (position === 0) {
        const method = worthDeflating(chunk) ? METHOD_DEFLATE : METHOD_STORE;
        await zip.begin({ ...file.streamed, method });
        if (method === METHOD_DEFLATE) {
          const stream = (deflater = createDeflateRaw({ level: 1 }));
          deflated = (async () => {
            for await (const out of stream) await zip.write(out as Buffer);
          })();
          deflated.catch(() => undefined);
        }
      }
      position += chunk.length;
      size += chunk.length;
      crc = crc32(chunk, crc);
      if (!deflater) await zip.write(chunk);
      else if (!deflater.write(chunk)) await Promise.race([once(deflater, 'drain'), deflated]);
    }
    if (size === 0) await zip.begin(file.streamed);
    deflater?.end();
    await deflated;
    await zip.end(crc, size);
  } finally {
    closeSync(file.fd);
    deflater?.destroy();
  }
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
  const cursors = { workspace: new DirectoryCursor(open.workspace.fd), env: new DirectoryCursor(open.env.fd) };
  const output = await openFile(file, 'wx', 0o600);
  try {
    const zip = new ZipWriter(output);
    await addEntries(zip, cursors, tree, include);
    const json = (name: string, value: unknown): ZipEntry => {
      const data = Buffer.from(JSON.stringify(value, null, name === METADATA ? 2 : undefined));
      return { name, kind: 'file', mode: 0o644, mtimeMs: Date.now(), method: METHOD_STORE, crc: crc32(data), size: data.length, data };
    };
    await zip.add(json(DELETED, deleted.map(deletedPathJson)));
    await zip.add(json(METADATA, metadata));
    const written = await zip.finish();
    await output.sync();
    return written;
  } finally {
    await output.close();
    cursors.workspace.close();
    cursors.env.close();
    await closeRoots(open);
  }
}

/**
 * The entries, in order, each file read and compressed up to READ_AHEAD ahead of the one being
 * written (the writer only lays out bytes), so reading, deflating and writing overlap.
 */
async function addEntries(zip: ZipWriter, cursors: OpenCursors, tree: Tree, include: string[]): Promise<void> {
  const ahead: Promise<PreparedFile | undefined>[] = [];
  const toRead = include.values();
  const schedule = () => {
    while (ahead.length < READ_AHEAD) {
      const { done, value: path } = toRead.next();
      if (done) return;
      const entry = tree.get(path)!;
      const prepared = entry.type === 'file' ? prepareFile(cursors, path, entry) : Promise.resolve(undefined);
      prepared.catch(() => undefined); // awaited in order below
      ahead.push(prepared);
    }
  };
  try {
    for (const path of include) {
      schedule();
      const entry = tree.get(path)!;
      const prepared = await ahead.shift()!;
      if (entry.type === 'directory') {
        const { root, ...where } = locate(cursors, path);
        await zip.add({
          name: `${path}/`,
          kind: 'directory',
          mode: entry.mode,
          mtimeMs: entry.mtimeMs,
          mtimeNs: exactMtime(root, where),
          method: METHOD_STORE,
          crc: 0,
          size: 0,
          data: Buffer.alloc(0),
        });
      } else if (entry.type === 'symlink') {
        const data = bytesOf(entry.target!);
        const { root, ...where } = locate(cursors, path);
        await zip.add({
          name: path,
          kind: 'symlink',
          mode: entry.mode || 0o777,
          mtimeMs: entry.mtimeMs,
          mtimeNs: exactMtime(root, where),
          method: METHOD_STORE,
          crc: crc32(data),
          size: data.length,
          data,
        });
      } else if (prepared && 'whole' in prepared) await zip.add(prepared.whole);
      else if (prepared) await streamFile(zip, prepared);
    }
  } finally {
    // On a failure, what was read ahead is let go: its descriptors closed.
    for (const pending of ahead.splice(0)) {
      const prepared = await pending.catch(() => undefined);
      if (prepared && 'fd' in prepared) closeSync(prepared.fd);
    }
  }
}

/** sha256 of a file, streamed. */
export async function sha256Of(file: string): Promise<string> {
  // 1 MB reads instead of the default 64 kB: a sixteenth of the round trips for a large archive.
  return (await hashOf(createReadStream(file, { highWaterMark: 1 << 20 }))).sha256;
}

interface ArchiveEntry {
  /** A byte string (storage/byteNames.ts). */
  path: ByteString;
  kind: 'file' | 'directory' | 'symlink';
  /** Permission bits; undefined for an entry without Unix attributes (a zip made elsewhere). */
  mode: number | undefined;
  /** Nanoseconds since 1970 (to 100 ns); undefined for archives written without it. */
  mtimeNs: bigint | undefined;
  zip: ZipDirectoryEntry;
  /** A symlink's target, a byte string (read when the archive is opened). */
  target?: ByteString;
}

export interface OpenedArchive {
  /** The archive's file, read again when it is extracted. */
  file: string;
  entries: ArchiveEntry[];
  deleted: string[];
}

/**
 * What an archive's central directory may hold: as many entries as a checkpoint makes (and its two
 * files of metadata), in at most 256 MB (500,000 entries of names of 400 bytes).
 */
const ARCHIVE_LIMITS: ZipDirectoryLimits = { entries: MAX_CHECKPOINT_ENTRIES + 2, bytes: 256 << 20 };

/**
 * A path an archive may name (a byte string): under workspace/ or env/, relative, no `..` or
 * `.` or empty component, no NUL. Every other byte is a name's own (a backslash too: Linux
 * allows it in a name, and nothing here reads it as a separator).
 */
export function checkPath(path: ByteString): ByteString {
  const clean = path.replace(/\/+$/, '');
  const parts = clean.split('/');
  if (clean.includes('\0') || clean.startsWith('/') || parts.includes('..') || parts.includes('.') || parts.includes('')) {
    throw errors.invalidArgument(`checkpoint archive entry ${quoted(textOf(path), 200)} would land outside the session`);
  }
  if (!(parts[0] === 'workspace' || parts[0] === 'env') || parts.length < 2) {
    throw errors.invalidArgument(`checkpoint archive entry ${quoted(textOf(path), 200)} is not under workspace/ or env/`);
  }
  return clean;
}

/**
 * deleted.json holds paths as JSON strings when their bytes are UTF-8 (as archives before byte
 * names did), else as `{ "bytes": base64 }`.
 */
function deletedPathJson(path: ByteString): string | { bytes: string } {
  return isUtf8Name(path) ? textOf(path) : { bytes: bytesOf(path).toString('base64') };
}

function deletedPathOf(item: unknown): ByteString {
  if (typeof item === 'string') return byteStringOfText(item);
  const bytes = (item as { bytes?: unknown } | null)?.bytes;
  if (typeof bytes === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(bytes)) return Buffer.from(bytes, 'base64').toString('latin1');
  throw errors.invalidArgument('checkpoint deletion list is malformed');
}

/**
 * An archive's deletion list, whole: past WHOLE_ENTRY_BYTES in pieces (a checkpoint deleting
 * 70,000 files of 130-byte paths writes 10 MB of it), up to as much as a central directory may
 * hold (the paths of 500,000 entries, base64 where they are not UTF-8, fit in far less).
 */
async function readDeletionList(fd: number, entry: ZipDirectoryEntry): Promise<Buffer> {
  if (entry.size <= WHOLE_ENTRY_BYTES) return readZipEntry(fd, entry);
  if (entry.size > ARCHIVE_LIMITS.bytes) throw new ZipFormatError(`a deletion list of ${entry.size} bytes, more than ${ARCHIVE_LIMITS.bytes}`);
  const chunks: Buffer[] = [];
  for await (const chunk of zipEntryChunks(fd, entry)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * How many entries the archive `file` holds and its central directory's size, from its end
 * records alone (a ZipFormatError when it has none, or they say more than any checkpoint holds).
 */
export async function archiveDirectory(file: string): Promise<ZipEnd> {
  const handle = await openFile(file, 'r');
  try {
    return await readZipEnd(handle.fd, (await handle.stat()).size, ARCHIVE_LIMITS);
  } finally {
    await handle.close();
  }
}

/**
 * Reads an archive's directory and checks every entry before anything is extracted: a name
 * that is absolute or has `..` refuses the whole archive. A symlink may point anywhere: it is
 * made as a link and nothing the worker does follows it (extractArchive). `longPaths`: the paths
 * past MAX_PATH_BYTES still allowed, shared by every archive of a restore's chain.
 */
export async function openArchive(file: string, signal?: AbortSignal, longPaths = { left: MAX_LONG_PATHS_RESTORED }): Promise<OpenedArchive> {
  const handle = await openFile(file, 'r');
  try {
    // Not a zip, damaged, or larger than any checkpoint: a ZipFormatError, which the caller names with the checkpoint.
    const directory = await readZipDirectory(handle.fd, (await handle.stat()).size, ARCHIVE_LIMITS, signal);
    const readWhole = (entry: ZipDirectoryEntry) => readZipEntry(handle.fd, entry);
    const entries: ArchiveEntry[] = [];
    let deleted: string[] = [];
    for (const [i, zip] of directory.entries()) {
      if (i % 4096 === 4095) await letOthersRun(signal);
      if (zip.name === METADATA) continue;
      if (zip.name === DELETED) {
        let list: unknown;
        const text = (await readDeletionList(handle.fd, zip)).toString('utf8');
        try {
          list = JSON.parse(text);
        } catch {
          throw errors.invalidArgument('checkpoint deletion list is not valid JSON');
        }
        if (!Array.isArray(list)) throw errors.invalidArgument('checkpoint deletion list is malformed');
        deleted = list.map((item) => checkPath(deletedPathOf(item)));
        continue;
      }
      const path = checkPath(zip.name);
      if (path.length + 1 > MAX_PATH_BYTES && --longPaths.left < 0)
        throw errors.tooLarge(
          `the checkpoint holds more than ${MAX_LONG_PATHS_RESTORED} paths longer than ${MAX_PATH_BYTES - 1} bytes (made before checkpoints refused them), more than a restore makes`,
        );
      const unixMode = zip.externalAttributes >>> 16;
      const kind = zip.name.endsWith('/') ? 'directory' : (unixMode & S_IFMT) === S_IFLNK ? 'symlink' : 'file';
      const target = kind === 'symlink' ? (await readWhole(zip)).toString('latin1') : undefined;
      if (target !== undefined && (target === '' || target.includes('\0')))
        throw errors.invalidArgument(`checkpoint archive symlink ${quoted(textOf(path), 200)} has no target`);
      entries.push({ path, kind, mode: unixMode === 0 ? undefined : unixMode & 0o7777, mtimeNs: zip.mtimeNs, zip, target });
    }
    return { file, entries, deleted };
  } finally {
    await handle.close();
  }
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
export async function extractArchive(archive: OpenedArchive, roots: ArchiveRoots, owners: Owners, signal?: AbortSignal): Promise<void> {
  const open = await openRoots(roots);
  const source = await openFile(archive.file, 'r');
  try {
    await extractInto(archive, source.fd, open, owners, signal);
  } finally {
    await source.close();
    await closeRoots(open);
  }
}

/** Removes what `path` names, when it is there; its parents are neither made nor followed through a link. */
async function removePath(roots: OpenRoots, path: ByteString): Promise<void> {
  const { root, parent, name } = locate(roots, path);
  await inDirectoryNoFollow(root, parent.map(pathArg), (dir) => removeEntry(dir, pathArg(name))).catch((err: unknown) => {
    if (!['ENOENT', 'ENOTDIR', 'ELOOP'].includes(errnoOf(err) ?? '')) throw err;
  });
}

/** Writes all of `bytes` to the open file `fd`. */
async function writeAll(fd: number, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length;) done += (await writeAsync(fd, bytes, done, bytes.length - done, position + done)).bytesWritten;
}

/** A large entry's bytes into the open file `fd`, chunk by chunk (smaller ones: extractFiles). */
async function writeEntry(source: number, entry: ZipDirectoryEntry, fd: number): Promise<void> {
  let position = 0;
  for await (const chunk of zipEntryChunks(source, entry)) {
    await writeAll(fd, chunk, position);
    position += chunk.length;
  }
}

/**
 * Extraction. The usual case, an entry whose directory exists and whose name is free, is made
 * with synchronous calls from the directory's descriptor (DirectoryCursor: tree order keeps it
 * open across a directory's entries); files' bytes are read, inflated and written on the
 * compression threads, a batch of files at a time (extractFiles). Anything else (a name taken
 * by an earlier archive of the chain, a missing parent) takes the general path: the parent
 * reached or made with inDirectoryNoFollow, whatever is there removed, the entry made. Neither
 * follows a link.
 */
async function extractInto(archive: OpenedArchive, source: number, roots: OpenRoots, owners: Owners, signal: AbortSignal | undefined): Promise<void> {
  const ownerOf = (path: string) => (path.startsWith('workspace/') ? owners.workspace : owners.env);
  const cursors = { workspace: new DirectoryCursor(roots.workspace.fd), env: new DirectoryCursor(roots.env.fd) };
  const inParent = <T>(path: ByteString, work: (dir: FileHandle, name: string | Buffer) => Promise<T>) => {
    const { root, parent, name } = locate(roots, path);
    return inDirectoryNoFollow(root, parent.map(pathArg), (dir) => work(dir, pathArg(name)), { owner: ownerOf(path) });
  };
  /** The entry's parent directory's descriptor and its name there, when the parent is a real directory already. */
  const parentOf = (path: ByteString): { dir: number; name: string | Buffer } | undefined => {
    const { root, parent, name } = locate(cursors, path);
    try {
      return { dir: root.open(parent), name: pathArg(name) };
    } catch {
      return undefined;
    }
  };
  const makeDirectory = async (entry: ArchiveEntry) => {
    const owner = ownerOf(entry.path);
    const settle = (fd: number) => {
      try {
        // The owner first: a chown clears the set-user and set-group bits.
        if (owner) fchownSync(fd, owner.uid, owner.gid);
        if (entry.mode !== undefined) fchmodSync(fd, entry.mode);
      } finally {
        closeSync(fd);
      }
    };
    const parent = parentOf(entry.path);
    if (parent) {
      try {
        mkdirSync(at(parent.dir, parent.name), { mode: 0o755 });
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
      try {
        return settle(openChildDirectorySync(parent.dir, parent.name));
      } catch (err) {
        if (!['ENOTDIR', 'ELOOP'].includes(errnoOf(err) ?? '')) throw err;
        // A file or link an earlier archive of the chain made there: the general path replaces it.
      }
    }
    await inParent(entry.path, async (dir, name) => {
      await mkdir(at(dir, name), { mode: 0o755 }).catch(async (err: unknown) => {
        if (errnoOf(err) !== 'EEXIST') throw err;
        const existing = await openChildDirectory(dir, name).catch(() => undefined);
        if (existing) return existing.close();
        await removeEntry(dir, name);
        await mkdir(at(dir, name), { mode: 0o755 });
      });
      settle(openChildDirectorySync(dir, name));
    });
  };
  /** A new regular file for the entry, its mode and owner set; a descriptor to write it through. */
  const createFile = async (entry: ArchiveEntry): Promise<number> => {
    const owner = ownerOf(entry.path);
    const create = (dir: FileHandle | number, name: string | Buffer) => {
      const fd = openSync(at(dir, name), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        if (owner) fchownSync(fd, owner.uid, owner.gid); // first: a chown clears the set-user and set-group bits
        fchmodSync(fd, entry.mode ?? 0o644);
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      return fd;
    };
    const parent = parentOf(entry.path);
    if (parent) {
      try {
        return create(parent.dir, parent.name);
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
    }
    return inParent(entry.path, async (dir, name) => {
      await removeEntry(dir, name);
      return create(dir, name);
    });
  };
  const makeLink = (entry: ArchiveEntry) =>
    inParent(entry.path, async (dir, name) => {
      const owner = ownerOf(entry.path);
      await removeEntry(dir, name);
      await symlink(bytesOf(entry.target!), at(dir, name));
      if (owner) await lchown(at(dir, name), owner.uid, owner.gid);
      if (entry.mtimeNs !== undefined) await lutimes(at(dir, name), utimesSeconds(entry.mtimeNs), utimesSeconds(entry.mtimeNs));
    });

  try {
    for (const path of archive.deleted) await removePath(roots, path);
    // Directories first, then files several at a time, then symlinks, so no file is written
    // through a link made by the same archive.
    for (const [i, entry] of archive.entries.entries()) {
      if (i % 1024 === 1023) signal?.throwIfAborted();
      if (entry.kind === 'directory') await makeDirectory(entry);
    }
    // Files that fit in memory whole go to the compression threads in batches, made here (their
    // paths are the cursors') and read, inflated, checked and written there; larger ones are
    // streamed here, a few at a time.
    const files = archive.entries.filter((e) => e.kind === 'file');
    const whole = (e: ArchiveEntry) => e.zip.size <= WHOLE_ENTRY_BYTES && e.zip.compressedSize <= WHOLE_ENTRY_BYTES;
    const batches = batchesOf(files.filter(whole));
    const large = files.filter((e) => !whole(e));
    let failed = false;
    const extractBatch = async (batch: ArchiveEntry[]) => {
      await extractingFiles.hold(batch.length, signal);
      const handed: ExtractedFile[] = [];
      try {
        for (const entry of batch) {
          const { localOffset, compressedSize, size, method, crc } = entry.zip;
          const mtime = entry.mtimeNs === undefined ? undefined : utimesSeconds(entry.mtimeNs);
          handed.push({
            name: JSON.stringify(entry.zip.name.slice(0, 200)),
            localOffset,
            compressedSize,
            size,
            method,
            crc,
            fd: await createFile(entry),
            mtime,
          });
        }
      } catch (err) {
        for (const file of handed) closeSync(file.fd);
        extractingFiles.release(batch.length);
        throw err;
      }
      await extractFiles(source, handed)
        .catch((err: unknown) => {
          throw err instanceof EntryFormatError ? new ZipFormatError(err.message) : err;
        })
        .finally(() => extractingFiles.release(batch.length));
    };
    const extractLarge = async (entry: ArchiveEntry) => {
      const fd = await createFile(entry);
      try {
        await writeEntry(source, entry.zip, fd);
        if (entry.mtimeNs !== undefined) futimesSync(fd, utimesSeconds(entry.mtimeNs), utimesSeconds(entry.mtimeNs));
      } finally {
        closeSync(fd);
      }
    };
    const work: (() => Promise<void>)[] = [...batches.map((batch) => () => extractBatch(batch)), ...large.map((entry) => () => extractLarge(entry))];
    let next = 0;
    const results = await Promise.allSettled(
      Array.from({ length: EXTRACT_CONCURRENCY }, async () => {
        while (!failed) {
          const step = work[next++];
          if (step === undefined) return;
          signal?.throwIfAborted();
          await step().catch((err: unknown) => {
            failed = true;
            throw err;
          });
        }
      }),
    );
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    for (const entry of archive.entries) if (entry.kind === 'symlink') await makeLink(entry);
  } finally {
    cursors.workspace.close();
    cursors.env.close();
  }
}

/**
 * Gives every directory of the chain (`archives`, oldest first, all extracted) its modification
 * time from the newest archive naming it: making entries in a directory moves its time, so this
 * comes last. Directories gone since are passed over.
 */
export async function restoreDirectoryTimes(archives: OpenedArchive[], roots: ArchiveRoots): Promise<void> {
  const times = new Map<ByteString, bigint>();
  for (const archive of archives)
    for (const entry of archive.entries) if (entry.kind === 'directory' && entry.mtimeNs !== undefined) times.set(entry.path, entry.mtimeNs);
  if (times.size === 0) return;
  const open = await openRoots(roots);
  const cursors = { workspace: new DirectoryCursor(open.workspace.fd), env: new DirectoryCursor(open.env.fd) };
  try {
    for (const [path, mtimeNs] of times) {
      const { root, segments } = locate(cursors, path);
      let fd: number;
      try {
        fd = root.open(segments);
      } catch {
        continue; // removed by a later archive of the chain
      }
      futimesSync(fd, utimesSeconds(mtimeNs), utimesSeconds(mtimeNs));
    }
  } finally {
    cursors.workspace.close();
    cursors.env.close();
    await closeRoots(open);
  }
}

/** Batches (or large files) extracted at once: enough to keep every compression thread busy while the next batch's files are made. */
const EXTRACT_CONCURRENCY = 6;
/**
 * Files being extracted, open, all restores together: a batch holds its files' descriptors until
 * the thread is done with them, and restores side by side must not take the worker's last ones.
 */
export const extractingFiles = new SharedBudget(512);

/** A batch for a compression thread: this many files, or this many bytes, whichever comes first. */
const BATCH_FILES = 64;
const BATCH_BYTES = 4 << 20;

/** Entries in batches of at most BATCH_FILES files and (past the first file) BATCH_BYTES bytes. */
function batchesOf(entries: ArchiveEntry[]): ArchiveEntry[][] {
  const batches: ArchiveEntry[][] = [];
  let batch: ArchiveEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entry.zip.size + entry.zip.compressedSize;
    if (batch.length > 0 && (batch.length >= BATCH_FILES || bytes + size > BATCH_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(entry);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}
