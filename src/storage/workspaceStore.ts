import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename as fsRename } from 'node:fs/promises';
import { join } from 'node:path';
import { treeSize } from './fileTree.js';
import { parseRecord, writeJsonAtomically } from './jsonFile.js';
import { removeTree } from './removeTree.js';
import { readTaskJournal, TaskJournal } from './taskJournal.js';

/** Where one session lives on disk. */
export interface SessionDirectories {
  root: string;
  /** The session's disk: a mounted image when it has a disk limit, else a plain directory. */
  disk: string;
  /** The image file backing `disk`, when there is one. */
  diskImage: string;
  workspace: string;
  environment: string;
  /** Scratch space of the session's pkg.install steps (on its disk, so under its limit). */
  scratch: string;
}

/**
 * Session directories on disk; the one place that lays them out and removes them:
 * `<data dir>/sessions/<id>/` holds `session.json` (the record) and `tasks.<n>.log` (its task
 * journal: storage/taskJournal.ts), `disk.img` and `disk/` (the session's disk, with
 * `workspace/`, `env/` and `.scratch/`), and `ctl/` (the warm interpreter's socket). Names
 * starting with `.` are spares being made or kept.
 */
export interface WorkspaceStore {
  directories(sessionId: string): SessionDirectories;
  /** The root and the (still unmounted, empty) disk directory. */
  create(sessionId: string): Promise<SessionDirectories>;
  /** Moves directories made under one name (a spare's) to another (the session's). */
  rename(from: string, to: string): Promise<SessionDirectories>;
  remove(sessionId: string): Promise<void>;
  /** Bytes of file content under the session's workspace (a bounded walk). */
  diskUsage(sessionId: string): Promise<number>;
  /** The names under sessions/: session ids, and spares an earlier run left (starting with '.'). */
  names(): Promise<string[]>;
  /** Moves a session's directory aside, out of the worker's way, keeping it for a person to look at. */
  quarantine(sessionId: string): Promise<string>;
  /** The session's persisted record (see sessions/sessionRecord.ts): raw JSON, or undefined. */
  readRecord(sessionId: string): Promise<string | undefined>;
  writeRecord(sessionId: string, record: unknown, durable: boolean): Promise<void>;
  /** A file of the session's kept beside its record (checkpoint trees). */
  readExtra<T>(sessionId: string, name: string, isValid: (value: unknown) => boolean): Promise<T | undefined>;
  /** Written atomically; fsynced too unless `durable` is false. */
  writeExtra(sessionId: string, name: string, value: unknown, durable?: boolean): Promise<void>;
  /** Copies the files `names` kept beside one session's record (those it has) to another's. */
  copyExtras(from: string, to: string, names: string[]): Promise<void>;
  /** The session's task journal (storage/taskJournal.ts), for its record's writer. */
  taskJournal(sessionId: string): SessionJournal;
  /** The lines of the session's task journal from generation `from` on (its record's SessionRecord.journal). */
  readTaskJournal(sessionId: string, from: number): Promise<unknown[]>;
}

/** What a session's record writer uses of its task journal. */
export type SessionJournal = Pick<TaskJournal, 'append' | 'lines' | 'resumeAt' | 'nextGeneration' | 'settled' | 'close'>;

/** The layout of one session's directory (see WorkspaceStore). */
export function sessionLayout(root: string): SessionDirectories {
  const disk = join(root, 'disk');
  return { root, disk, diskImage: join(root, 'disk.img'), workspace: join(disk, 'workspace'), environment: join(disk, 'env'), scratch: join(disk, '.scratch') };
}

export class LocalWorkspaceStore implements WorkspaceStore {
  constructor(
    private readonly sessionsDir: string,
    private readonly quarantineDir: string,
  ) {}

  directories(sessionId: string): SessionDirectories {
    return sessionLayout(join(this.sessionsDir, sessionId));
  }

  async create(sessionId: string): Promise<SessionDirectories> {
    const dirs = this.directories(sessionId);
    await mkdir(dirs.disk, { recursive: true });
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

  async names(): Promise<string[]> {
    return readdir(this.sessionsDir).catch(() => [] as string[]);
  }

  async quarantine(sessionId: string): Promise<string> {
    await mkdir(this.quarantineDir, { recursive: true });
    const aside = join(this.quarantineDir, `${sessionId}-${Date.now()}`);
    await fsRename(this.directories(sessionId).root, aside);
    return aside;
  }

  async readRecord(sessionId: string): Promise<string | undefined> {
    return readFile(join(this.directories(sessionId).root, 'session.json'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
  }

  async writeRecord(sessionId: string, record: unknown, durable: boolean): Promise<void> {
    await writeJsonAtomically(join(this.directories(sessionId).root, 'session.json'), record, durable);
  }

  taskJournal(sessionId: string): SessionJournal {
    return new TaskJournal(() => this.directories(sessionId).root);
  }

  readTaskJournal(sessionId: string, from: number): Promise<unknown[]> {
    return readTaskJournal(this.directories(sessionId).root, from);
  }

  async readExtra<T>(sessionId: string, name: string, isValid: (value: unknown) => boolean): Promise<T | undefined> {
    const raw = await readFile(join(this.directories(sessionId).root, name), 'utf8').catch(() => undefined);
    return raw === undefined ? undefined : parseRecord<T>(raw, isValid);
  }

  async writeExtra(sessionId: string, name: string, value: unknown, durable = true): Promise<void> {
    await writeJsonAtomically(join(this.directories(sessionId).root, name), value, durable);
  }

  async copyExtras(from: string, to: string, names: string[]): Promise<void> {
    const [source, target] = [this.directories(from).root, this.directories(to).root];
    await Promise.all(
      names.map((name) =>
        copyFile(join(source, name), join(target, name), constants.COPYFILE_FICLONE).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        }),
      ),
    );
  }
}
