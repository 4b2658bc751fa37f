import { ZipArchive, type ArchiverError, type EntryData } from 'archiver';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, lchown, mkdir, open, rm, symlink } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import unzipper from 'unzipper';
import { errors } from '../errors.js';
import type { Tree } from './fileTree.js';

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

function hostPath(roots: ArchiveRoots, path: string): string {
  const [top, ...rest] = path.split('/');
  return join(top === 'workspace' ? roots.workspace : roots.env, ...rest);
}

/**
 * Writes an archive of the listed paths (keys of `tree`, prefixed workspace/ or env/) to `file`,
 * hashing it as it is written, and fsyncs it. Returns its sha256 and size.
 */
export async function writeArchive(file: string, roots: ArchiveRoots, tree: Tree, include: string[], deleted: string[], metadata: object): Promise<{ sha256: string; size: number }> {
  // Level 1: checkpoints are written while the session waits; speed over the last few percent.
  const archive = new ZipArchive({ zlib: { level: 1 } });
  const hash = createHash('sha256');
  let size = 0;
  const hasher = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const output = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  const written = pipeline(archive, hasher, output);
  written.catch(() => undefined);
  archive.on('warning', (err: ArchiverError) => archive.emit('error', err));

  for (const path of include) {
    const entry = tree.get(path)!;
    if (entry.type === 'directory') archive.append('', { name: `${path}/`, mode: entry.mode, type: 'directory' } as EntryData);
    else if (entry.type === 'symlink') archive.symlink(path, entry.target!, entry.mode || 0o777);
    else archive.append(createReadStream(hostPath(roots, path)), { name: path, mode: entry.mode, date: new Date(entry.mtimeMs) });
  }
  archive.append(JSON.stringify(deleted), { name: DELETED });
  archive.append(JSON.stringify(metadata, null, 2), { name: METADATA });
  // A failing output (disk full) stops the pipeline; finalize() would then wait forever.
  try {
    await Promise.all([archive.finalize(), written]);
  } catch (err) {
    archive.abort();
    throw err;
  }
  const handle = await open(file, 'r');
  await handle.sync();
  await handle.close();
  return { sha256: hash.digest('hex'), size };
}

/** sha256 of a file, streamed. */
export async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
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
function checkPath(path: string): string {
  const clean = path.replace(/\/+$/, '');
  const parts = clean.split('/');
  if (clean.includes('\0') || clean.includes('\\') || clean.startsWith('/') || parts.includes('..') || parts.includes('.') || parts.includes('')) {
    throw errors.invalidArgument(`checkpoint archive entry ${JSON.stringify(path)} would land outside the session`);
  }
  if (!(parts[0] === 'workspace' || parts[0] === 'env') || parts.length < 2) {
    throw errors.invalidArgument(`checkpoint archive entry ${JSON.stringify(path)} is not under workspace/ or env/`);
  }
  return clean;
}

/** A symlink may only point (relatively) to somewhere inside its own tree. */
function checkLink(path: string, target: string): void {
  const [top] = path.split('/');
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (target.startsWith('/') || target.includes('\0') || !(resolved === top || resolved.startsWith(`${top}/`))) {
    throw errors.invalidArgument(`checkpoint archive symlink ${JSON.stringify(path)} points outside the session (${JSON.stringify(target)})`);
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
    throw errors.invalidArgument(`the checkpoint archive cannot be read: ${(err as Error).message}`);
  }
  const entries: ArchiveEntry[] = [];
  let deleted: string[] = [];
  for (const file of directory.files) {
    if (file.path === METADATA) continue;
    if (file.path === DELETED) {
      const list = JSON.parse((await file.buffer()).toString('utf8')) as unknown;
      if (!Array.isArray(list) || !list.every((p) => typeof p === 'string')) throw errors.invalidArgument('checkpoint deletion list is malformed');
      deleted = (list as string[]).map(checkPath);
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
  workspace: { uid: number; gid: number } | undefined;
  env: { uid: number; gid: number } | undefined;
}

/** Applies an opened (checked) archive to the roots: its deletions, then its entries. */
export async function extractArchive(archive: OpenedArchive, roots: ArchiveRoots, owners: Owners): Promise<void> {
  const ownerOf = (path: string) => (path.startsWith('workspace/') ? owners.workspace : owners.env);
  const made = new Set<string>();
  const ensureDir = async (dir: string) => {
    if (made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    made.add(dir);
  };
  const place = async (entry: ArchiveEntry) => {
    const target = hostPath(roots, entry.path);
    if (entry.kind === 'directory') {
      await ensureDir(target);
      if (entry.mode) await chmod(target, entry.mode);
    } else {
      await ensureDir(dirname(target));
      await rm(target, { recursive: true, force: true });
      if (entry.kind === 'symlink') {
        await symlink((await entry.file.buffer()).toString('utf8'), target);
      } else {
        await pipeline(entry.file.stream(), createWriteStream(target, { flags: 'wx', mode: entry.mode || 0o644 }));
        await chmod(target, entry.mode || 0o644);
      }
    }
    const owner = ownerOf(entry.path);
    if (owner) await lchown(target, owner.uid, owner.gid);
  };

  for (const path of archive.deleted) await rm(hostPath(roots, path), { recursive: true, force: true });
  // Directories first, then files several at a time (each a separate read of the archive), then
  // symlinks, so no file is written through a link made by the same archive.
  for (const entry of archive.entries.filter((e) => e.kind === 'directory')) await place(entry);
  const files = archive.entries.filter((e) => e.kind === 'file');
  let next = 0;
  await Promise.all(
    Array.from({ length: EXTRACT_CONCURRENCY }, async () => {
      while (next < files.length) await place(files[next++]!);
    }),
  );
  for (const entry of archive.entries.filter((e) => e.kind === 'symlink')) await place(entry);
}

const EXTRACT_CONCURRENCY = 8;
