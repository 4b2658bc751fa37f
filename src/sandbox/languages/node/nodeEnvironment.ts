import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readUntrustedJson } from '../../../storage/untrustedJson.js';
import type { InstalledPackage } from '../language.js';
import { isPackageName, isRegistrySpec } from './npmRequirements.js';

/**
 * A node session's environment: package.json (what pkg.install asked for, as npm saved it),
 * package-lock.json (the whole tree npm resolved) and node_modules. Both JSON files are read
 * back as the session's (a restore brings them from a checkpoint): bounded, no link followed,
 * every field checked.
 */

/** Largest package.json / package-lock.json read back. */
const MAX_MANIFEST_BYTES = 1024 * 1024;
const MAX_LOCK_BYTES = 32 * 1024 * 1024;

/** What a new environment's package.json says. */
export const EMPTY_MANIFEST = { name: 'codegen-session', private: true, dependencies: {} };

export async function createNodeEnvironment(root: string): Promise<void> {
  await mkdir(join(root, 'node_modules'), { recursive: true });
  await writeFile(join(root, 'package.json'), `${JSON.stringify(EMPTY_MANIFEST, null, 2)}\n`);
}

/** The registry packages an environment's package.json depends on, as `name@spec`; anything else in it is left out. */
export async function environmentDependencies(root: string): Promise<string[]> {
  const manifest = await readUntrustedJson(root, ['package.json'], MAX_MANIFEST_BYTES);
  const dependencies = (manifest as { dependencies?: unknown } | null | undefined)?.dependencies;
  if (typeof dependencies !== 'object' || dependencies === null || Array.isArray(dependencies)) return [];
  return Object.entries(dependencies as Record<string, unknown>)
    .filter((entry): entry is [string, string] => typeof entry[1] === 'string')
    .map(([name, spec]) => `${name}@${spec}`)
    .filter(isRegistrySpec);
}

/** The packages a package-lock.json (v2/v3) lists, each with the name it is installed under. */
export function lockPackages(lock: unknown): { name: string; version: string | undefined; topLevel: boolean }[] {
  const packages = (lock as { packages?: unknown } | null | undefined)?.packages;
  if (typeof packages !== 'object' || packages === null || Array.isArray(packages)) return [];
  return Object.entries(packages as Record<string, unknown>).flatMap(([path, entry]) => {
    const at = path.lastIndexOf('node_modules/');
    const name = at === -1 ? '' : path.slice(at + 'node_modules/'.length);
    if (!isPackageName(name)) return [];
    const version = (entry as { version?: unknown } | null)?.version;
    return [{ name, version: typeof version === 'string' ? version.slice(0, 100) : undefined, topLevel: at === 0 }];
  });
}

/** What an npm run at `root` installed (its package-lock.json): the top-level packages, `requested` those named in `requested`. */
export async function installedByLock(root: string, requested: readonly string[]): Promise<InstalledPackage[] | undefined> {
  const lock = await readUntrustedJson(root, ['package-lock.json'], MAX_LOCK_BYTES);
  if (lock === undefined) return undefined;
  const names = new Set(requested);
  return lockPackages(lock)
    .filter((p) => p.topLevel)
    .map((p) => ({ name: p.name, version: p.version, requested: names.has(p.name) }));
}

/** Every package in an environment as `name@version`, sorted, each once (for checkpoint records). */
export async function installedInEnvironment(root: string): Promise<string[]> {
  const lock = await readUntrustedJson(root, ['package-lock.json'], MAX_LOCK_BYTES);
  const named = lockPackages(lock).map((p) => (p.version ? `${p.name}@${p.version}` : p.name));
  return [...new Set(named)].sort();
}
