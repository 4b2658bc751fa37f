import type { FileHandle } from 'node:fs/promises';
import { errors, quoted } from '../errors.js';
import { openChildForReading } from '../storage/beneath.js';
import { inWorkspace, workspaceSegments } from '../storage/workspacePath.js';
import { parseCount, parseEncoding } from './arguments.js';
import { requireMode, requireRegularFile, toFileError } from './fileErrors.js';
import { isUtf8InSlices, setTextBytes, TextBytes, writeBase64InSlices } from './textBytes.js';
import { defineTool } from './tool.js';

// Room left in a message for everything but the contents.
const MESSAGE_OVERHEAD = 64 * 1024;

/** Reads a file of the workspace, as UTF-8 text or base64. */
export const fsRead = defineTool({
  name: 'fs.read',
  kind: 'instant',
  arguments: { required: ['path'], optional: ['encoding', 'offset', 'length'] },
  outputs: ['path', 'contents', 'size', 'encoding', 'file_size'],
  parse({ path, encoding, offset, length }) {
    return {
      path,
      segments: workspaceSegments(path),
      encoding: parseEncoding('fs.read', encoding),
      offset: parseCount('fs.read', 'offset', offset),
      length: parseCount('fs.read', 'length', length, Infinity),
    };
  },
  async run({ path, segments, encoding, offset, length }, context) {
    const { session, limits } = context;
    let read: ReadBytes;
    let fileSize = 0;
    try {
      read = await inWorkspace(session.sandbox.workspace, async (tree) => {
        const found = await tree.locate(segments);
        if (!found || found.stat?.isDirectory()) throw errors.invalidArgument(`${quoted(path, 200)} is a directory; use fs.list`);
        if (!found.stat) throw errors.fileNotFound(path);
        requireRegularFile(path, found.stat);
        // The entry may have changed since: only what is opened, without following a link and
        // without blocking on a FIFO, and then checked, is read.
        const file = await openChildForReading(found.dir, found.name);
        try {
          const st = await file.stat();
          requireRegularFile(path, st);
          requireMode(path, st.mode, 0o400);
          fileSize = st.size;
          // The part asked for: from `offset` (none past the end), at most `length` bytes.
          const size = Math.max(0, Math.min(st.size - offset, length));
          const encodedSize = encoding === 'base64' ? Math.ceil(size / 3) * 4 : size;
          if (encodedSize > limits.maxMessageBytes - MESSAGE_OVERHEAD) {
            throw errors.tooLarge(
              `${quoted(path, 200)} is ${size} bytes${offset > 0 || length < Infinity ? ' (the part asked for)' : ''}, too large for one message (limit ${limits.maxMessageBytes} bytes, WORKER_MAX_MESSAGE_MB); read it in parts with offset and length`,
            );
          }
          // The bytes (which are the reply's text too) and, for base64, the reply's text of them.
          await context.holdPayload(size + (encoding === 'base64' ? encodedSize : 0));
          return await readUpTo(file, offset, size, encoding === 'base64' ? 0 : REPLY_ROOM);
        } finally {
          await file.close();
        }
      });
    } catch (err) {
      throw toFileError(path, err);
    }
    const outputs: Record<string, string> = { path };
    if (encoding === 'base64') {
      const region = Buffer.allocUnsafe(REPLY_ROOM.before + Math.ceil(read.length / 3) * 4 + REPLY_ROOM.after);
      const written = await writeBase64InSlices(read.bytes, region, REPLY_ROOM.before);
      setTextBytes(outputs, 'contents', new TextBytes(region, REPLY_ROOM.before, written));
    } else {
      if (!(await isUtf8InSlices(read.bytes))) throw errors.invalidArgument(`${quoted(path, 200)} is not valid UTF-8 text; read it with encoding=base64`);
      // As TextDecoder gave it before: a leading byte order mark is not part of the text.
      const bom = read.length >= 3 && read.bytes[0] === 0xef && read.bytes[1] === 0xbb && read.bytes[2] === 0xbf ? 3 : 0;
      setTextBytes(outputs, 'contents', new TextBytes(read.region, read.start + bom, read.length - bom));
    }
    return { ok: true, exitCode: 0, outputs: Object.assign(outputs, { size: String(read.length), encoding, file_size: String(fileSize) }) };
  },
});

/** Room kept before and after a file's bytes for the rest of its reply (task id, path, size: grpc/resultReplyEncoding.ts). */
const REPLY_ROOM = { before: 8192, after: 256 };

interface ReadBytes {
  region: Buffer;
  start: number;
  length: number;
  bytes: Buffer;
}

/**
 * `size` bytes of the file from `offset` (fewer if it shrank: a file the session keeps growing is
 * not followed), read into memory with `room` free before and after them.
 */
async function readUpTo(file: FileHandle, offset: number, size: number, room: { before: number; after: number } | 0): Promise<ReadBytes> {
  const before = room === 0 ? 0 : room.before;
  const region = Buffer.allocUnsafe(before + size + (room === 0 ? 0 : room.after));
  let filled = 0;
  while (filled < size) {
    const { bytesRead } = await file.read(region, before + filled, size - filled, offset + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return { region, start: before, length: filled, bytes: region.subarray(before, before + filled) };
}
