import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** What a checkpoint remembers of one path, to tell later whether it changed. */
export interface TreeEntry {
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mtimeMs: number;
  mode: number;
  target?: string;
}

/** Every path under a root (relative, '/'-separated), without following symlinks. */
export type Tree = Map<string, TreeEntry>;

export async function scanTree(root: string, prefix = ''): Promise<Tree> {
  const tree: Tree = new Map();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      const path = join(dir, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const st = await lstat(path).catch(() => undefined);
      if (!st) continue;
      if (st.isSymbolicLink()) {
        tree.set(`${prefix}${relPath}`, { type: 'symlink', size: 0, mtimeMs: st.mtimeMs, mode: st.mode & 0o7777, target: await readlink(path) });
      } else if (st.isDirectory()) {
        tree.set(`${prefix}${relPath}`, { type: 'directory', size: 0, mtimeMs: 0, mode: st.mode & 0o7777 });
        await walk(path, relPath);
      } else if (st.isFile()) {
        tree.set(`${prefix}${relPath}`, { type: 'file', size: st.size, mtimeMs: st.mtimeMs, mode: st.mode & 0o7777 });
      }
    }
  };
  await walk(root, '');
  return tree;
}

function same(a: TreeEntry, b: TreeEntry): boolean {
  return a.type === b.type && a.size === b.size && a.mtimeMs === b.mtimeMs && a.mode === b.mode && a.target === b.target;
}

/** Paths added or changed in `now` since `before`, and paths gone from it. */
export function diffTrees(before: Tree, now: Tree): { changed: string[]; deleted: string[] } {
  const changed = [...now].filter(([path, entry]) => {
    const old = before.get(path);
    return !old || !same(old, entry);
  });
  const deleted = [...before.keys()].filter((path) => !now.has(path));
  return { changed: changed.map(([path]) => path), deleted };
}
