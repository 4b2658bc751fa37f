import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { hasFields, readJsonFile, writeJsonAtomically } from './jsonFile.js';
import { INCOMING } from './dataDirectory.js';

/**
 * What is recorded beside each checkpoint archive. The store keeps the session's config as it
 * was given (`unknown` here); sessions/ checks it when it reads a record back (SessionCheckpoint).
 */
export interface CheckpointRecord<Config = unknown> {
  checkpointId: string;
  sessionId: string;
  createdAtMs: number;
  checksumSha256: string;
  installedPackages: string[];
  modifiedFiles: string[];
  /** modifiedFiles lists only the first paths (records before this field: never cut). */
  modifiedFilesTruncated?: boolean;
  workspaceId: string;
  userId: string;
  config: Config;
  parentCheckpointId: string;
  sizeBytes: number;
  storageUrl: string;
}

export const isCheckpointRecord = hasFields({
  checkpointId: 'string',
  sessionId: 'string',
  createdAtMs: 'number',
  checksumSha256: 'string',
  installedPackages: 'object',
  modifiedFiles: 'object',
  workspaceId: 'string',
  userId: 'string',
  parentCheckpointId: 'string',
  sizeBytes: 'number',
});

/** A checkpoint's record is there but its archive is not (removed from the store from outside). */
export class MissingArchiveError extends Error {
  override name = 'MissingArchiveError';
}

/** A local copy of an archive, removed by release() when it was fetched from elsewhere. */
export interface FetchedArchive {
  path: string;
  release(): Promise<void>;
}

/**
 * Where checkpoints live. save() makes an archive and its record visible together or not at
 * all: the archive goes first, the record (what makes a checkpoint exist) last.
 */
export interface CheckpointStore {
  urlOf(checkpointId: string): string;
  /** A local directory for archives being written (on the same filesystem where that matters). */
  scratchDir(): Promise<string>;
  save(record: CheckpointRecord, archive: string): Promise<void>;
  /** Undefined when there is none; DamagedRecordError when it cannot be read as one. */
  record(checkpointId: string): Promise<CheckpointRecord | undefined>;
  /** MissingArchiveError when the archive is gone. */
  fetch(checkpointId: string): Promise<FetchedArchive>;
  /** Every readable record (damaged ones are left out). */
  list(): Promise<CheckpointRecord[]>;
  remove(checkpointId: string): Promise<void>;
}

/** Checkpoint ids are ours (`checkpoint-` and URL-safe characters): anything else is unknown. */
export function isCheckpointId(id: string): boolean {
  return /^checkpoint-[A-Za-z0-9_-]{8,64}$/.test(id);
}

/** `<data dir>/checkpoints/<id>.zip` and `<id>.json`. */
export class LocalCheckpointStore implements CheckpointStore {
  constructor(private readonly dir: string) {}

  urlOf(checkpointId: string): string {
    return pathToFileURL(join(this.dir, `${checkpointId}.zip`)).href;
  }

  async scratchDir(): Promise<string> {
    await mkdir(join(this.dir, INCOMING), { recursive: true });
    return join(this.dir, INCOMING);
  }

  async save(record: CheckpointRecord, archive: string): Promise<void> {
    await rename(archive, join(this.dir, `${record.checkpointId}.zip`));
    await writeJsonAtomically(join(this.dir, `${record.checkpointId}.json`), record);
    const dir = await open(this.dir, 'r');
    await dir.sync();
    await dir.close();
  }

  async record(checkpointId: string): Promise<CheckpointRecord | undefined> {
    if (!isCheckpointId(checkpointId)) return undefined;
    return readJsonFile<CheckpointRecord>(join(this.dir, `${checkpointId}.json`), isCheckpointRecord);
  }

  async fetch(checkpointId: string): Promise<FetchedArchive> {
    const path = join(this.dir, `${checkpointId}.zip`);
    if (
      !(await stat(path).then(
        (st) => st.isFile(),
        () => false,
      ))
    )
      throw new MissingArchiveError(checkpointId);
    return { path, release: async () => undefined };
  }

  async list(): Promise<CheckpointRecord[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return readableRecords(
      names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)),
      (id) => this.record(id),
    );
  }

  async remove(checkpointId: string): Promise<void> {
    await rm(join(this.dir, `${checkpointId}.json`), { force: true });
    await rm(join(this.dir, `${checkpointId}.zip`), { force: true });
  }
}

/** The records of `ids` that can be read; one that cannot is left out. */
export async function readableRecords(ids: string[], read: (id: string) => Promise<CheckpointRecord | undefined>): Promise<CheckpointRecord[]> {
  const records = await Promise.all(ids.map((id) => read(id).catch(() => undefined)));
  return records.filter((r): r is CheckpointRecord => r !== undefined);
}
