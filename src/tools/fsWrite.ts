import { constants } from 'node:fs';
import { lstat, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errors } from '../errors.js';
import { resolveWorkspacePath } from '../storage/workspacePath.js';
import { checkArguments, parseEncoding } from './arguments.js';
import { requireMode, toFileError } from './fileErrors.js';
import { defineTool } from './tool.js';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Writes a file in the workspace, creating parent directories. */
export const fsWrite = defineTool({
  name: 'fs.write',
  parse(args) {
    const { path, contents, encoding } = checkArguments('fs.write', args, ['path', 'contents'], ['encoding']);
    const enc = parseEncoding('fs.write', encoding);
    if (enc === 'base64' && !BASE64.test(contents)) throw errors.invalidArgument('fs.write contents are not valid base64');
    return { path, bytes: Buffer.from(contents, enc === 'base64' ? 'base64' : 'utf8') };
  },
  async run({ path, bytes }, { session }) {
    const target = await resolveWorkspacePath(session.sandbox.workspace, path);
    if (target === session.sandbox.workspace) throw errors.invalidPath(path, 'it names the workspace root, not a file');
    try {
      const existing = await lstat(target).catch(() => undefined);
      if (existing?.isDirectory()) throw errors.invalidArgument(`${JSON.stringify(path)} is a directory; fs.write writes files`);
      if (existing) requireMode(path, existing.mode, 0o200);
      await mkdir(dirname(target), { recursive: true });
      // O_NOFOLLOW: the path was resolved through its symlinks already; one appearing now is refused.
      const file = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
      try {
        await file.writeFile(bytes);
      } finally {
        await file.close();
      }
    } catch (err) {
      throw toFileError(path, err);
    }
    return { ok: true, exitCode: 0, outputs: { path, bytes_written: String(bytes.length) } };
  },
});
