import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { openRegularFileNoFollow, openTrustedDirectory } from '../../../storage/beneath.js';
import { canonicalName } from './requirements.js';

/**
 * Wheels pkg.install's fetch step brought, kept by the worker with the requirement list they
 * resolved: a later pkg.install of the same list (another session's, typically) skips pip's
 * start, resolution and download, and installs these files directly (wheelInstaller.py).
 *
 * A resolution stands while every index page it came from reads the same as when it was stored
 * (pip itself reads them afresh on every install), and for RESOLUTION_TTL_MS at most. Files are
 * streamed from the fetch step's directory without following links, named by their SHA-256,
 * owned by the worker and only ever mounted read-only into a sandbox. The store is bounded
 * (MAX_BYTES, then it keeps nothing new until the worker restarts: nothing is deleted under a
 * running install), and so is what the worker keeps of it in memory (keys are digests).
 */

const RESOLUTION_TTL_MS = 10 * 60 * 1000;
const MAX_BYTES = 2 * 1024 ** 3;
/** Larger wheels are not kept (copying one is bounded work for the worker). */
const MAX_WHEEL_BYTES = 256 * 1024 ** 2;
const MAX_RESOLUTIONS = 1000;
/** A wheel's file name (PEP 427), nothing a path could hide in. */
const WHEEL_NAME = /^[A-Za-z0-9_.+!-]{1,200}\.whl$/;

export interface StoredWheel {
  /** The file's host path in the store. */
  path: string;
  /** Its file name, as the index named it (name-version-tags.whl). */
  name: string;
  /** Project name and version, from the file name. */
  project: string;
  version: string;
}

interface Resolution {
  wheels: StoredWheel[];
  /** The SHA-256 of each project's index page when the wheels were fetched. */
  pages: Map<string, string>;
  at: number;
}

/** Reads a project's index page and returns its digest (undefined: cannot be read). */
export type PageDigest = (project: string) => Promise<string | undefined>;

export class WheelStore {
  private readonly resolutions = new Map<string, Resolution>();
  private bytes = 0;
  /** One copy into the store at a time, worker-wide. */
  private copying: Promise<unknown> = Promise.resolve();

  private constructor(private readonly dir: string) {}

  /**
   * The store at `dir`, started empty (what an earlier run kept has no resolutions left): the old
   * one is moved aside and removed in the background, not on start-up's path.
   */
  static async open(dir: string): Promise<WheelStore> {
    const aside = `${basename(dir)}.old-`;
    await rename(dir, join(dirname(dir), `${aside}${process.pid}-${Date.now()}`)).catch(() => undefined);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    // Every store moved aside (this one, and any a run killed meanwhile left) goes in the background.
    void readdir(dirname(dir))
      .then((names) => Promise.all(names.filter((n) => n.startsWith(aside)).map((n) => rm(join(dirname(dir), n), { recursive: true, force: true }))))
      .catch(() => undefined);
    return new WheelStore(dir);
  }

  /** The key of a requirement list fetched from an index (order does not matter). */
  static key(requirements: string[], indexUrl: string | undefined, cacheKey?: string): string {
    // With a user's cache key (WORKER_CACHE_SCOPE=user), one user's resolutions are never another's.
    const parts = cacheKey === undefined ? [indexUrl ?? '', [...requirements].sort()] : [indexUrl ?? '', [...requirements].sort(), cacheKey];
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  /** The wheels this list resolved to, while fresh, its index pages unchanged and its files all stored. */
  async lookup(key: string, pageDigest: PageDigest): Promise<StoredWheel[] | undefined> {
    const found = this.resolutions.get(key);
    if (!found) return undefined;
    if (Date.now() - found.at > RESOLUTION_TTL_MS) {
      this.resolutions.delete(key);
      return undefined;
    }
    const checks = await Promise.all([
      ...[...found.pages].map(async ([project, digest]) => (await pageDigest(project)) === digest),
      ...found.wheels.map((w) =>
        stat(w.path).then(
          (s) => s.isFile(),
          () => false,
        ),
      ),
    ]);
    return checks.every(Boolean) ? found.wheels : undefined;
  }

  /**
   * Keeps the wheels the fetch step left in `fetched` as what `key` resolves to, with the index
   * pages of their projects as they read now (read after the fetch: a release in between makes
   * the pages differ from what pip saw in the other direction only, and the next lookup misses).
   */
  async remember(key: string, fetched: string, pageDigest: PageDigest): Promise<void> {
    this.dropExpired();
    const names = (await readdir(fetched)).filter((n) => WHEEL_NAME.test(n));
    const parsed = names.map(wheelOf);
    if (names.length === 0 || parsed.some((w) => w === undefined)) return;
    const projects = [...new Set(parsed.map((w) => canonicalName(w!.project)))];
    const digests = await Promise.all(projects.map(pageDigest));
    if (digests.some((d) => d === undefined)) return;
    const pages = new Map(projects.map((project, i) => [project, digests[i]!]));
    const copied = this.copying.then(() => this.copyAll(fetched, names));
    this.copying = copied.catch(() => undefined);
    const wheels = await copied;
    if (!wheels) return;
    if (this.resolutions.size >= MAX_RESOLUTIONS) this.resolutions.delete(this.resolutions.keys().next().value!);
    this.resolutions.set(key, { wheels, pages, at: Date.now() });
  }

  /** Forgets every resolution and removes every stored wheel (the caches' disk is being emptied; no install runs). */
  async clear(): Promise<void> {
    await this.copying;
    this.resolutions.clear();
    this.bytes = 0;
    for (const name of await readdir(this.dir)) await rm(join(this.dir, name), { recursive: true, force: true });
  }

  private dropExpired(): void {
    const now = Date.now();
    for (const [key, found] of this.resolutions) if (now - found.at > RESOLUTION_TTL_MS) this.resolutions.delete(key);
  }

  private async copyAll(fetched: string, names: string[]): Promise<StoredWheel[] | undefined> {
    const source = await openTrustedDirectory(fetched);
    try {
      const wheels: StoredWheel[] = [];
      for (const name of names) {
        const stored = await this.copyIn(source, name);
        if (!stored) return undefined; // not a regular file, too large, or the store is full: nothing is remembered
        wheels.push(stored);
      }
      return wheels;
    } finally {
      await source.close();
    }
  }

  /** One wheel streamed into the store under its digest (kept when already there). */
  private async copyIn(source: Awaited<ReturnType<typeof openTrustedDirectory>>, name: string): Promise<StoredWheel | undefined> {
    const file = await openRegularFileNoFollow(source, [name]);
    if (!file) return undefined;
    const temporary = join(this.dir, `.incoming-${randomBytes(8).toString('hex')}`);
    try {
      const size = (await file.stat()).size;
      if (size > MAX_WHEEL_BYTES || this.bytes + size > MAX_BYTES) return undefined;
      const hash = createHash('sha256');
      const out = await open(temporary, 'wx', 0o644);
      let written = 0;
      try {
        await pipeline(
          file.createReadStream({ autoClose: false, end: size - 1 }),
          new Writable({
            write(chunk: Buffer, _encoding, done) {
              written += chunk.length;
              hash.update(chunk);
              out.write(chunk).then(() => done(), done);
            },
          }),
        );
      } finally {
        await out.close();
      }
      if (written !== size) return undefined; // it changed under the copy
      const digest = hash.digest('hex');
      const path = join(this.dir, digest, name);
      await mkdir(join(this.dir, digest), { recursive: true, mode: 0o755 });
      await rename(temporary, path);
      this.bytes += size;
      return { path, name, ...wheelOf(name)! };
    } finally {
      await rm(temporary, { force: true });
      await file.close();
    }
  }
}

/** A wheel's project name and version, from its file name (PEP 427: name-version-tags.whl). */
function wheelOf(name: string): { project: string; version: string } | undefined {
  const [, project, version] = /^([A-Za-z0-9_.]+)-([A-Za-z0-9_.!+]+)-/.exec(name) ?? [];
  return project && version ? { project, version } : undefined;
}
