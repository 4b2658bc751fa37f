import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A Go session's environment (at /env in its sandbox), relative to its root:
 *
 *     go.mod, go.sum   the session's module: what pkg.install added (`require`) and their sums
 *     gopath/          GOPATH; gopath/pkg/mod is GOMODCACHE, the installed modules' sources
 *     gocache/         GOCACHE: the build cache, the only part the session's code may write;
 *                      gocache/codegen-run/ holds run.go's linked programs (see goRun.sh)
 *
 * Checkpoints carry the module and its module cache (a restore builds without any proxy) but
 * not gocache/, which is large, remade on demand and tied to this host's toolchain.
 */
export const GO_ENV = {
  goMod: 'go.mod',
  goSum: 'go.sum',
  gopath: 'gopath',
  modCache: 'gopath/pkg/mod',
  buildCache: 'gocache',
  programs: 'gocache/codegen-run',
} as const;

/** The session module's path: what code run by run.go is built as part of. */
export const SESSION_MODULE = 'session';

/** Lays out an empty environment at `root`: a module requiring nothing, empty caches. */
export async function createGoEnvironment(root: string, languageVersion: string): Promise<void> {
  await mkdir(root, { recursive: true });
  await Promise.all([
    mkdir(join(root, GO_ENV.modCache), { recursive: true }),
    mkdir(join(root, GO_ENV.buildCache), { recursive: true }),
    writeFile(join(root, GO_ENV.goMod), `module ${SESSION_MODULE}\n\ngo ${languageVersion}\n`),
    writeFile(join(root, GO_ENV.goSum), ''),
  ]);
}

/** The variables every go command of a session runs with, for the environment at `env` (as processes see it). */
export function goVariables(env: string): Record<string, string> {
  return {
    GOPATH: `${env}/${GO_ENV.gopath}`,
    GOMODCACHE: `${env}/${GO_ENV.modCache}`,
    GOCACHE: `${env}/${GO_ENV.buildCache}`,
    // The toolchain is the host's: a go.mod asking for another gets an error, never a download.
    GOTOOLCHAIN: 'local',
    // No C compiler: builds are pure Go (cgo packages would need the host's headers and libraries).
    CGO_ENABLED: '0',
    // No checksum database to ask; go.sum pins what pkg.install added.
    GOSUMDB: 'off',
    GOVCS: '*:off',
  };
}
