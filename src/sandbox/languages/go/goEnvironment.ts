import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A Go session's module is its workspace's (/workspace/go.mod, go.sum), where the user's code
 * is, so `go test ./...` and `go build` work there as in any checkout; a new session's
 * workspace starts with a go.mod of module `session` requiring nothing. pkg.install adds its
 * modules there. Its environment (at /env in its sandbox) holds the rest, relative to its root:
 *
 *     gopath/          GOPATH; gopath/pkg/mod is GOMODCACHE, the installed modules' sources
 *     gocache/         GOCACHE: the build cache, the only part the session's code may write;
 *                      gocache/codegen-run/ holds run.go's linked programs (see goRun.sh)
 *
 * Checkpoints carry the module and its module cache (a restore builds without any proxy) but
 * not gocache/, which is large, remade on demand and tied to this host's toolchain.
 */
export const GO_ENV = {
  gopath: 'gopath',
  modCache: 'gopath/pkg/mod',
  buildCache: 'gocache',
  programs: 'gocache/codegen-run',
} as const;

/** The session's module, in its workspace (a legacy session's is in its environment). */
export const GO_MODULE = { goMod: 'go.mod', goSum: 'go.sum' } as const;

/** A new session's module path. */
export const SESSION_MODULE = 'session';

/** A module requiring nothing, as a new workspace's go.mod (and pkg.install's where the session removed it). */
export function newGoMod(languageVersion: string): string {
  return `module ${SESSION_MODULE}\n\ngo ${languageVersion}\n`;
}

/** Lays out an empty environment at `root`: empty caches. */
export async function createGoEnvironment(root: string): Promise<void> {
  await mkdir(root, { recursive: true });
  await Promise.all([mkdir(join(root, GO_ENV.modCache), { recursive: true }), mkdir(join(root, GO_ENV.buildCache), { recursive: true })]);
}

/** A new workspace's module: go.mod of a module requiring nothing. */
export async function seedGoWorkspace(workspace: string, languageVersion: string): Promise<void> {
  await writeFile(join(workspace, GO_MODULE.goMod), newGoMod(languageVersion), { flag: 'wx' });
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
