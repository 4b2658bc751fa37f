import { constants } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, relative } from 'node:path';
import { errors } from '../errors.js';
import { resolveWorkspacePath } from '../storage/workspacePath.js';
import { checkArguments, parseEncoding } from './arguments.js';
import { requireMode, toFileError } from './fileErrors.js';
import { defineTool } from './tool.js';

/** Standard base64 with padding; checked without a backtracking regex (contents may be huge). */
function isBase64(text: string): boolean {
  if (text.length % 4 !== 0) return false;
  const body = text.endsWith('==') ? text.slice(0, -2) : text.endsWith('=') ? text.slice(0, -1) : text;
  return !/[^A-Za-z0-9+/]/.test(body);
}

/**
 * Writes a file in the workspace, creating parent directories. The bytes go to a temporary file
 * beside the target that is then renamed over it, so code running in the session never sees a
 * half-written file; an existing file keeps its mode.
 */
export const fsWrite = defineTool({
  name: 'fs.write',
  streams: false,
  parse(args) {
    const { path, contents, encoding } = checkArguments('fs.write', args, ['path', 'contents'], ['encoding']);
    const enc = parseEncoding('fs.write', encoding);
    if (enc === 'base64' && !isBase64(contents)) throw errors.invalidArgument('fs.write contents are not valid base64');
    return { path, bytes: Buffer.from(contents, enc === 'base64' ? 'base64' : 'utf8') };
  },
  async run({ path, bytes }, { session }) {
    const owner = session.sandbox.owner;
    const target = await resolveWorkspacePath(session.sandbox.workspace, path);
    if (target === session.sandbox.workspace) throw errors.invalidPath(path, 'it names the workspace root, not a file');
    const temporary = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.fs-write`);
    try {
      const existing = await lstat(target).catch(() => undefined);
      if (existing?.isDirectory()) throw errors.invalidArgument(`${JSON.stringify(path)} is a directory; fs.write writes files`);
      if (existing) requireMode(path, existing.mode, 0o200);
      const firstCreated = await mkdir(dirname(target), { recursive: true });
      // What fs.write creates belongs to the session's uid, so its code can change it.
      if (owner && firstCreated) {
        let dir = firstCreated;
        for (const segment of ['', ...relative(firstCreated, dirname(target)).split('/').filter(Boolean)]) {
          dir = join(dir, segment);
          await chown(dir, owner.uid, owner.gid);
        }
      }
      const file = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      try {
        await file.writeFile(bytes);
      } finally {
        await file.close();
      }
      if (existing) await chmod(temporary, existing.mode & 0o7777);
      if (owner) await chown(temporary, existing?.uid ?? owner.uid, existing?.gid ?? owner.gid);
      await rename(temporary, target);
    } catch (err) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw toFileError(path, err);
    }
    return { ok: true, exitCode: 0, outputs: { path, bytes_written: String(bytes.length) } };
  },
});
