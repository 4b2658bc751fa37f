import { isUtf8 } from 'node:buffer';
import { errors, quoted } from '../errors.js';
import { bytesOf, textOf } from '../storage/byteNames.js';
import { errnoOf } from '../storage/beneath.js';
import { listDirectory } from '../storage/fileTree.js';
import { inWorkspace, workspaceSegments } from '../storage/workspacePath.js';
import { toFileError } from './fileErrors.js';
import { defineTool } from './tool.js';

interface ListedEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  modified_ms: number;
  /** The name's bytes, for a name that is not UTF-8 (`name` then has U+FFFD for them; no path names it). */
  name_base64?: string;
}

/** Lists a workspace directory, sorted by name, directories with a trailing `/`. */
export const fsList = defineTool({
  name: 'fs.list',
  kind: 'instant',
  arguments: { required: ['path'] },
  outputs: ['entries', 'entries_json'],
  parse({ path }) {
    return { path, segments: workspaceSegments(path) };
  },
  async run({ path, segments }, { session }) {
    let entries: ListedEntry[];
    try {
      entries = await inWorkspace(session.sandbox.workspace, async (tree) => {
        const dir = await tree.directory(segments).catch((err: unknown) => {
          if (errnoOf(err) === 'ENOTDIR')
            throw errors.invalidArgument(`${quoted(path, 200)} is not a directory (a file, or a file on the way); use fs.read for files`);
          throw err;
        });
        // The descriptor's own listing, and each entry looked up in it: never a path the session could redirect.
        return (await listDirectory(dir)).map(({ name, st }): ListedEntry => {
          const type = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
          const entry: ListedEntry = { name: textOf(name), type, size: st.size, modified_ms: Math.floor(st.mtimeMs) };
          const bytes = bytesOf(name);
          if (!isUtf8(bytes)) entry.name_base64 = bytes.toString('base64');
          return entry;
        });
      });
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
