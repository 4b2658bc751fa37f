import type { FileHandle } from 'node:fs/promises';
import { errors, quoted } from '../errors.js';
import { openChildForReading } from '../storage/beneath.js';
import { inWorkspace, workspaceSegments } from '../storage/workspacePath.js';
import { checkArguments, parseEncoding } from './arguments.js';
import { requireMode, requireRegularFile, toFileError } from './fileErrors.js';
import { defineTool } from './tool.js';

// Room left in a message for everything but the contents.
const MESSAGE_OVERHEAD = 64 * 1024;

/** Reads a file of the workspace, as UTF-8 text or base64. */
export const fsRead = defineTool({
  name: 'fs.read',
  kind: 'instant',
  parse(args) {
    const { path, encoding } = checkArguments('fs.read', args, ['path'], ['encoding']);
    return { path, segments: workspaceSegments(path), encoding: parseEncoding('fs.read', encoding) };
  },
  async run({ path, segments, encoding }, context) {
    const { session, limits } = context;
    let bytes: Buffer;
    try {
      bytes = await inWorkspace(session.sandbox.workspace, async (tree) => {
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
          const encodedSize = encoding === 'base64' ? Math.ceil(st.size / 3) * 4 : st.size;
          if (encodedSize > limits.maxMessageBytes - MESSAGE_OVERHEAD) {
            throw errors.tooLarge(
              `${quoted(path, 200)} is ${st.size} bytes, too large for one message (limit ${limits.maxMessageBytes} bytes, WORKER_MAX_MESSAGE_MB); read it with run.python in parts`,
            );
          }
          // The bytes, their text (one byte a character at best, or base64's 4/3) and the reply's encoding.
          await context.holdPayload(st.size + 2 * encodedSize);
          return await readUpTo(file, st.size);
        } finally {
          await file.close();
        }
      });
    } catch (err) {
      throw toFileError(path, err);
    }
    let contents: string;
    if (encoding === 'base64') {
      contents = bytes.toString('base64');
    } else {
      try {
        contents = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw errors.invalidArgument(`${quoted(path, 200)} is not valid UTF-8 text; read it with encoding=base64`);
      }
    }
    return { ok: true, exitCode: 0, outputs: { path, contents, size: String(bytes.length), encoding } };
  },
});

/** The file's first `size` bytes (fewer if it shrank): a file the session keeps growing is not followed. */
async function readUpTo(file: FileHandle, size: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const { bytesRead } = await file.read(buffer, filled, size - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}
