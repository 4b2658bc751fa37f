import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { errors } from '../errors.js';
import { resolveWorkspacePath } from '../storage/workspacePath.js';
import { checkArguments, parseEncoding } from './arguments.js';
import { requireMode, toFileError } from './fileErrors.js';
import { defineTool } from './tool.js';

// Room left in a message for everything but the contents.
const MESSAGE_OVERHEAD = 64 * 1024;

/** Reads a file of the workspace, as UTF-8 text or base64. */
export const fsRead = defineTool({
  name: 'fs.read',
  streams: false,
  parse(args) {
    const { path, encoding } = checkArguments('fs.read', args, ['path'], ['encoding']);
    return { path, encoding: parseEncoding('fs.read', encoding) };
  },
  async run({ path, encoding }, { session, limits }) {
    const target = await resolveWorkspacePath(session.sandbox.workspace, path);
    let bytes: Buffer;
    try {
      const file = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const st = await file.stat();
        if (st.isDirectory()) throw errors.invalidArgument(`${JSON.stringify(path)} is a directory; use fs.list`);
        if (!st.isFile()) throw errors.invalidArgument(`${JSON.stringify(path)} is not a regular file`);
        requireMode(path, st.mode, 0o400);
        const encodedSize = encoding === 'base64' ? Math.ceil(st.size / 3) * 4 : st.size;
        if (encodedSize > limits.maxMessageBytes - MESSAGE_OVERHEAD) {
          throw errors.tooLarge(`${JSON.stringify(path)} is ${st.size} bytes, too large for one message (limit ${limits.maxMessageBytes} bytes, WORKER_MAX_MESSAGE_MB); read it with run.python in parts`);
        }
        bytes = await file.readFile();
      } finally {
        await file.close();
      }
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
        throw errors.invalidArgument(`${JSON.stringify(path)} is not valid UTF-8 text; read it with encoding=base64`);
      }
    }
    return { ok: true, exitCode: 0, outputs: { path, contents, size: String(bytes.length), encoding } };
  },
});
