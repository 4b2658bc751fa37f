import { lstat, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { errors } from '../errors.js';

/**
 * Resolves a client's workspace-relative path to a real absolute path inside the workspace,
 * or refuses it with INVALID_ARGUMENT: absolute paths, `..` segments, NUL bytes, and anything
 * that resolves (through symlinks too) outside the workspace. The path need not exist; the part
 * that does is resolved component by component, so no symlink is followed unchecked.
 *
 * `""` and `"."` name the workspace root.
 */
export async function resolveWorkspacePath(workspace: string, path: string): Promise<string> {
  if (path.includes('\0')) throw errors.invalidPath(path, 'it contains a NUL byte');
  if (path.startsWith('/')) throw errors.invalidPath(path, 'absolute paths are not allowed; give a path relative to the workspace root');
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw errors.invalidPath(path, "'..' segments are not allowed");

  const root = await realpath(workspace);
  const inside = (p: string) => p === root || p.startsWith(`${root}/`);
  let current = root;
  for (let i = 0; i < segments.length; i++) {
    const next = join(current, segments[i]!);
    let st;
    try {
      st = await lstat(next);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return join(next, ...segments.slice(i + 1));
      if (code === 'ENOTDIR') throw errors.invalidPath(path, `'${segments.slice(0, i).join('/')}' is a file, not a directory`);
      throw err;
    }
    if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = await realpath(next);
      } catch {
        throw errors.invalidPath(path, `'${segments.slice(0, i + 1).join('/')}' is a symlink to nothing`);
      }
      if (!inside(target)) throw errors.invalidPath(path, 'it resolves outside the workspace (through a symlink)');
      current = target;
    } else {
      current = next;
    }
  }
  return current;
}
