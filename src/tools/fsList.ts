import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errors } from '../errors.js';
import { resolveWorkspacePath } from '../storage/workspacePath.js';
import { checkArguments } from './arguments.js';
import { toFileError } from './fileErrors.js';
import { defineTool } from './tool.js';

interface ListedEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  modified_ms: number;
}

/** Lists a workspace directory, sorted by name, directories with a trailing `/`. */
export const fsList = defineTool({
  name: 'fs.list',
  streams: false,
  parse: (args) => checkArguments('fs.list', args, ['path']),
  async run({ path }, { session }) {
    const target = await resolveWorkspacePath(session.sandbox.workspace, path);
    let entries: ListedEntry[];
    try {
      if (!(await stat(target)).isDirectory()) throw errors.invalidArgument(`${JSON.stringify(path)} is a file; use fs.read`);
      const names = await readdir(target);
      entries = (
        await Promise.all(
          names.map(async (name): Promise<ListedEntry | undefined> => {
            const st = await lstat(join(target, name)).catch(() => undefined); // gone meanwhile
            if (!st) return undefined;
            const type = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
            return { name, type, size: st.size, modified_ms: Math.floor(st.mtimeMs) };
          }),
        )
      ).filter((e): e is ListedEntry => e !== undefined);
    } catch (err) {
      throw toFileError(path, err);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return {
      ok: true,
      exitCode: 0,
      outputs: {
        entries: entries.map((e) => (e.type === 'directory' ? `${e.name}/` : e.name)).join(','),
        entries_json: JSON.stringify(entries),
      },
    };
  },
});
