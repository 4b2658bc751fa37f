import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openRegularFileNoFollow, openTrustedDirectory } from '../../storage/beneath.js';

/**
 * Wheels pkg.install's fetch step brought, kept by the worker with the requirement list they
 * resolved: a later pkg.install of the same list (another session's, typically) skips pip's
 * start, resolution and download, and installs these files directly (wheelInstaller.ts).
 *
 * A resolution is reused for RESOLUTION_TTL_MS: ten minutes, as long as pip's own HTTP cache
 * trusts an index page (PyPI's max-age); after that the index is asked again. Files are copied
 * from the fetch step's directory without following links, named by their SHA-256, owned by the
 * worker and only ever mounted read-only into a sandbox. The store is bounded: past MAX_BYTES it
 * starts again empty.
 */

const RESOLUTION_TTL_MS = 10 * 60 * 1000;
const MAX_BYTES = 2 * 1024 ** 3;
const MAX_RESOLUTIONS = 1000;
/** A wheel's file name (PEP 427), nothing a path could hide in. */
const WHEEL_NAME = /^[A-Za-z0-9_.+!-]{1,200}\.whl$/;

export interface StoredWheel {
  /** The file's host path in the store. */
  path: string;
  /** Its file name, as the index named it (name-version-tags.whl). */
  name: string;
}

interface Resolution {
  wheels: StoredWheel[];
  at: number;
}

export class WheelStore {
  private readonly resolutions = new Map<string, Resolution>();
  private bytes = 0;

  private constructor(private readonly dir: string) {}

  /** The store at `dir`, started empty (what an earlier run kept has no resolutions left). */
  static async open(dir: string): Promise<WheelStore> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o755 });
    return new WheelStore(dir);
  }

  /** The key of a requirement list fetched from an index (order does not matter). */
  static key(requirements: string[], indexUrl: string | undefined): string {
    return JSON.stringify([indexUrl ?? '', [...requirements].sort()]);
  }

  /** The wheels this list resolved to, while fresh and all still stored. */
  async lookup(key: string): Promise<StoredWheel[] | undefined> {
    const found = this.resolutions.get(key);
    if (!found) return undefined;
    if (Date.now() - found.at > RESOLUTION_TTL_MS) {
      this.resolutions.delete(key);
      return undefined;
    }
    const present = await Promise.all(
      found.wheels.map((w) =>
        stat(w.path).then(
          (s) => s.isFile(),
          () => false,
        ),
      ),
    );
    return present.every(Boolean) ? found.wheels : undefined;
  }

  /** Keeps the wheels the fetch step left in `fetched` as what `key` resolves to. */
  async remember(key: string, fetched: string): Promise<void> {
    const source = await openTrustedDirectory(fetched);
    try {
      const names = (await readdir(fetched)).filter((n) => WHEEL_NAME.test(n));
      if (names.length === 0) return;
      const wheels: StoredWheel[] = [];
      for (const name of names) {
        const stored = await this.copyIn(source, name);
        if (!stored) return; // not a regular file (or gone): nothing is remembered
        wheels.push(stored);
      }
      if (this.resolutions.size >= MAX_RESOLUTIONS) this.resolutions.delete(this.resolutions.keys().next().value!);
      this.resolutions.set(key, { wheels, at: Date.now() });
    } finally {
      await source.close();
    }
  }

  /** One wheel copied into the store under its digest (kept when already there). */
  private async copyIn(source: Awaited<ReturnType<typeof openTrustedDirectory>>, name: string): Promise<StoredWheel | undefined> {
    const file = await openRegularFileNoFollow(source, [name]);
    if (!file) return undefined;
    try {
      const size = (await file.stat()).size;
      if (this.bytes + size > MAX_BYTES) await this.clear();
      const bytes = await file.readFile();
      const digest = createHash('sha256').update(bytes).digest('hex');
      const dir = join(this.dir, digest);
      const path = join(dir, name);
      if (
        await stat(path).then(
          () => true,
          () => false,
        )
      )
        return { path, name };
      await mkdir(dir, { recursive: true, mode: 0o755 });
      const temporary = `${path}.tmp-${process.pid}`;
      const out = await open(temporary, 'w', 0o644);
      try {
        await out.writeFile(bytes);
      } finally {
        await out.close();
      }
      await rename(temporary, path);
      this.bytes += size;
      return { path, name };
    } finally {
      await file.close();
    }
  }

  private async clear(): Promise<void> {
    this.resolutions.clear();
    this.bytes = 0;
    await rm(this.dir, { recursive: true, force: true });
  }
}
