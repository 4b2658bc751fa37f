import { constants, type Stats } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { errors, quoted } from '../errors.js';
import { at, openTrustedDirectory, type TreeResolver } from '../storage/beneath.js';
import type { Owner } from '../storage/owner.js';
import { inWorkspace, workspaceSegments } from '../storage/workspacePath.js';
import { parseEncoding, parseFlag } from './arguments.js';
import { decodeStrictBase64, decodeStrictBase64Bytes } from './base64.js';
import { requireMode, requireRegularFile, toFileError } from './fileErrors.js';
import { isUtf8InSlices, textBytesOf } from './textBytes.js';
import { defineTool, type InstantToolContext } from './tool.js';

interface WriteArgs {
  path: string;
  segments: string[];
  /** What to write (when asText is given, to write only if they are UTF-8). */
  bytes: Buffer;
  /** Payload bytes held while the file is written. */
  held: number;
  /** The contents as text, when `bytes` are the request's, not yet known to be UTF-8. */
  asText?: () => string;
  /** `bytes` are the request's base64 text, decoded by run() (strictly, in slices). */
  base64?: true;
  /** Added at the file's end instead of replacing it. */
  append: boolean;
}

function notBase64(): never {
  throw errors.invalidArgument('fs.write contents are not valid base64');
}

/**
 * Writes a file in the workspace, creating parent directories. The bytes go to a temporary file
 * in the session's scratch directory (on the same disk, outside the workspace) that is then
 * renamed over the target, so code running in the session never sees a half-written file, nor
 * does a fork or checkpoint taken meanwhile; an existing file keeps its mode and owner. Every
 * step in the workspace works on the descriptor of the target's directory (storage/beneath.ts):
 * the session cannot redirect it.
 */
export const fsWrite = defineTool({
  name: 'fs.write',
  kind: 'instant',
  arguments: { required: ['path', 'contents'], optional: ['encoding', 'append'] },
  outputs: ['path', 'bytes_written'],
  parse(checked): WriteArgs {
    const { path, encoding } = checked;
    const segments = workspaceSegments(path);
    if (segments.length === 0) throw errors.invalidPath(path, 'it names the workspace root, not a file');
    const enc = parseEncoding('fs.write', encoding);
    return { ...contentsOf(checked, path, segments, enc), append: parseFlag('fs.write', 'append', checked.append) };
  },
  async run(args: WriteArgs, context) {
    const bytes = await bytesOf(args, context);
    try {
      await context.session.writes.write(() =>
        inWorkspace(context.session.sandbox.workspace, (tree) => (args.append ? appendTo(tree, args, bytes, context) : replace(tree, args, bytes, context))),
      );
    } catch (err) {
      throw toFileError(args.path, err);
    }
    return { ok: true, exitCode: 0, outputs: { path: args.path, bytes_written: String(bytes.length) } };
  },
});

/** What to write, from the request (see WriteArgs). */
function contentsOf(
  checked: Record<string, string> & { contents: string },
  path: string,
  segments: string[],
  enc: ReturnType<typeof parseEncoding>,
): Omit<WriteArgs, 'append'> {
  // Large text contents come as the request's bytes (grpc/taskRequestDecoding.ts): written as
  // they are once run() has checked that they are UTF-8, so a 32 MB write is never a string.
  // Held: those bytes, while the file is written.
  // Large base64 likewise: decoded from those bytes, never a string of them all.
  const carried = textBytesOf(checked, 'contents');
  if (carried && enc === 'utf-8') return { path, segments, bytes: carried.bytes, held: carried.length, asText: () => checked.contents };
  if (carried) {
    const text = carried.bytes;
    const padding = text.at(-1) === 0x3d ? (text.at(-2) === 0x3d ? 2 : 1) : 0;
    return { path, segments, bytes: text, held: text.length + Math.floor(text.length / 4) * 3 - padding, base64: true };
  }
  const { contents } = checked;
  const bytes = enc === 'base64' ? decodeStrictBase64(contents) : Buffer.from(contents, 'utf8');
  if (!bytes) notBase64();
  // The request's text (a byte a character at least) and its bytes, held while the file is written.
  return { path, segments, bytes, held: contents.length + bytes.length };
}

/** The bytes to write, decoded and checked, held against the payload budget while written. */
async function bytesOf({ bytes: given, held, asText, base64 }: WriteArgs, context: InstantToolContext): Promise<Buffer> {
  await context.holdPayload(held);
  let bytes = given;
  if (base64) bytes = (await decodeStrictBase64Bytes(given)) ?? notBase64();
  if (asText && !(await isUtf8InSlices(bytes))) {
    // Not UTF-8: written as they always were, the text the request decodes to (each invalid
    // sequence a U+FFFD) encoded back, both held besides.
    const text = asText();
    bytes = Buffer.from(text, 'utf8');
    await context.holdPayload(text.length + bytes.length);
  }
  return bytes;
}

/** Where the file goes (its directories made as `owner`'s), checked writable if it exists. */
async function writableEntry(tree: TreeResolver, path: string, segments: string[], owner: Owner | undefined) {
  const found = await tree.locate(segments, { owner });
  if (!found || found.stat?.isDirectory()) throw errors.invalidArgument(`${quoted(path, 200)} is a directory; fs.write writes files`);
  if (found.stat) {
    requireRegularFile(path, found.stat);
    requireMode(path, found.stat.mode, 0o200);
  }
  return found;
}

/** The file replaced whole: written in the session's scratch directory, then renamed over it. */
async function replace(tree: TreeResolver, { path, segments }: WriteArgs, bytes: Buffer, context: InstantToolContext): Promise<void> {
  // What fs.write creates belongs to the session's uid, so its code can change it.
  const owner = context.session.sandbox.owner;
  const { dir, name, stat: existing } = await writableEntry(tree, path, segments, owner);
  const scratch = await openTrustedDirectory(context.session.sandbox.scratch).catch(() => undefined);
  try {
    const written = scratch && (await writeAndRename(scratch, dir, name, bytes, existing, owner).catch(notAcrossDisks));
    // No scratch directory (or another filesystem): beside the target, as a last resort.
    if (!written) await writeAndRename(dir, dir, name, bytes, existing, owner);
  } finally {
    await scratch?.close();
  }
}

/** A rename refused because its two ends are on different filesystems: false (the write is done again elsewhere). */
function notAcrossDisks(err: unknown): false {
  if ((err as NodeJS.ErrnoException).code === 'EXDEV') return false;
  throw err;
}

/** `bytes` written to a new temporary in `staging`, given `existing`'s mode and owner, and renamed to `name` in `dir`. */
async function writeAndRename(
  staging: FileHandle,
  dir: FileHandle,
  name: string,
  bytes: Buffer,
  existing: Stats | undefined,
  owner: Owner | undefined,
): Promise<true> {
  const temporary = `.fs-write-${randomBytes(6).toString('hex')}`;
  try {
    const file = await open(at(staging, temporary), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    try {
      await file.writeFile(bytes);
      if (existing) await file.chmod(existing.mode & 0o7777);
      if (owner) await file.chown(existing?.uid ?? owner.uid, existing?.gid ?? owner.gid);
    } finally {
      await file.close();
    }
    await rename(at(staging, temporary), at(dir, name));
    return true;
  } catch (err) {
    await unlink(at(staging, temporary)).catch(() => undefined);
    throw err;
  }
}

/**
 * The bytes added at the file's end: a large file sent in parts. Not atomic as a replacement is:
 * code reading meanwhile sees the parts so far. A file not there (or gone meanwhile: the session
 * may unlink it) is made as a replacement makes it, the session's; one there is opened without
 * creating, and its owner and mode are checked on what was opened.
 */
async function appendTo(tree: TreeResolver, args: WriteArgs, bytes: Buffer, context: InstantToolContext): Promise<void> {
  const { path, segments } = args;
  const owner = context.session.sandbox.owner;
  const { dir, name, stat: existing } = await writableEntry(tree, path, segments, owner);
  if (!existing) return replace(tree, args, bytes, context);
  let file;
  try {
    file = await open(at(dir, name), constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return replace(tree, args, bytes, context);
    throw err;
  }
  try {
    const opened = await file.stat();
    requireRegularFile(path, opened);
    requireMode(path, opened.mode, 0o200);
    await file.writeFile(bytes);
  } finally {
    await file.close();
  }
}
