import { mkdir, readdir, rename as fsRename } from 'node:fs/promises';
import { join } from 'node:path';
import { treeSize } from './fileTree.js';
import { removeTree } from './removeTree.js';

/** Where one session lives on disk. */
export interface SessionDirectories {
  root: string;
  workspace: string;
  environment: string;
}

/** Session workspaces on disk; the one place that lays them out and removes them. */
export interface WorkspaceStore {
  create(sessionId: string): Promise<SessionDirectories>;
  /** Moves directories made under one name (a spare's) to another (the session's). */
  rename(from: string, to: string): Promise<SessionDirectories>;
  remove(sessionId: string): Promise<void>;
  /** Bytes of file content under the session's workspace. */
  diskUsage(sessionId: string): Promise<number>;
  /**
   * Removes what an earlier run of the worker left (its sessions died with it); returns how many.
   * Quota mounts left on them must be gone first.
   */
  removeStale(): Promise<number>;
}

/** Workspaces under `<data dir>/sessions/<session id>/{workspace,env}`. */
export class LocalWorkspaceStore implements WorkspaceStore {
  private readonly sessionsDir: string;

  constructor(dataDir: string) {
    this.sessionsDir = join(dataDir, 'sessions');
  }

  directories(sessionId: string): SessionDirectories {
    const root = join(this.sessionsDir, sessionId);
    return { root, workspace: join(root, 'workspace'), environment: join(root, 'env') };
  }

  async create(sessionId: string): Promise<SessionDirectories> {
    const dirs = this.directories(sessionId);
    await mkdir(dirs.workspace, { recursive: true });
    return dirs;
  }

  async rename(from: string, to: string): Promise<SessionDirectories> {
    await fsRename(this.directories(from).root, this.directories(to).root);
    return this.directories(to);
  }

  async remove(sessionId: string): Promise<void> {
    await removeTree(this.directories(sessionId).root);
  }

  async diskUsage(sessionId: string): Promise<number> {
    return treeSize(this.directories(sessionId).workspace);
  }

  async removeStale(): Promise<number> {
    const names = await readdir(this.sessionsDir).catch(() => [] as string[]);
    await Promise.all(names.map((name) => removeTree(join(this.sessionsDir, name))));
    return names.length;
  }
}
