import { readFileSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errors } from '../../../errors.js';
import { readSmallFileNoFollow } from '../../../storage/beneath.js';
import { namesIn } from '../../../storage/fileTree.js';
import type { Owner } from '../../../storage/owner.js';
import { removeTree } from '../../../storage/removeTree.js';
import {
  SYSTEM_PATH,
  type SessionRoots,
  type CodeCommand,
  type InstallResult,
  type InstalledPackage,
  type Language,
  type LanguageSandbox,
} from '../language.js';
import type { Mount } from '../../confine/launcher.js';
import type { RunOptions, SandboxedResult } from '../../process/processSpec.js';
import { proxyVariables } from '../proxyVariables.js';
import { prepareSharedCache } from '../../caches/sharedCache.js';
import { createGoEnvironment, GO_ENV, GO_MODULE, goVariables, newGoMod, seedGoWorkspace } from './goEnvironment.js';
import { GO_INSTALLER, goModRequires, MAX_GO_MOD_BYTES, moduleOf, splitRequirement, type ModuleRequirement } from './goRequirements.js';
import { GO_RUN_SCRIPT } from './goRun.js';
import { resolveGoToolchain, type GoToolchain } from './goToolchain.js';
import { requireReachable } from '../../network/sourceReachable.js';

export interface GoLanguageOptions {
  /** WORKER_GOPROXY: the proxies modules are fetched from (GOPROXY syntax, no `direct`). */
  goProxy: string;
  /** The shared module download cache, owned by the installer uid (see storage/dataDirectory.ts). */
  goCache: string;
}

/** Where the install steps' directories are inside a sandbox. */
const INSIDE = { goCache: '/go-cache', fetch: '/go-fetch', addCache: '/go-add-cache' };

/** The program run.go runs to prove the sandbox works for Go sessions (selfCheck.go). */
const SELF_CHECK = readFileSync(new URL('../../../../../src/sandbox/languages/go/selfCheck.go', import.meta.url), 'utf8');

/**
 * Go sessions: the host's toolchain (resolved once), a module per session in its workspace
 * (goEnvironment.ts) that pkg.install adds modules to in two steps, and run.go building `code`
 * as part of that module, its linked program cached (goRun.sh).
 */
export class GoLanguage implements Language {
  readonly name = 'go';
  readonly installer = GO_INSTALLER;
  readonly machineSpecific = [GO_ENV.buildCache];
  readonly writablePaths = [GO_ENV.buildCache];
  // The runtime's allocation failing, or its reservations at start under a small address-space limit.
  readonly outOfMemory = /^fatal error: (?:runtime: )?out of memory|^fatal error: failed to reserve|^runtime: out of memory/m;
  readonly selfCheck = { code: SELF_CHECK, isolated: '42 false', plain: '42' };
  readonly installerCacheInside = INSIDE.goCache;
  readonly systemMounts: Mount[];
  readonly toolchainPath: string[];

  private constructor(
    readonly toolchain: GoToolchain,
    private readonly options: GoLanguageOptions,
  ) {
    const root = toolchain.goroot;
    this.systemMounts = root === '/usr' || root.startsWith('/usr/') ? [] : [{ host: root, inside: root, writable: false }];
    this.toolchainPath = [dirname(toolchain.executable)];
  }

  /** WORKER_GO resolved to its toolchain (GoUnavailableError when it cannot run). */
  static async resolve(command: string, options: GoLanguageOptions): Promise<GoLanguage> {
    return new GoLanguage(await resolveGoToolchain(command), options);
  }

  describe(): Record<string, string> {
    return { go: this.toolchain.executable, go_version: this.toolchain.version, go_proxy: this.options.goProxy };
  }

  /** The shared module download cache, the installer uid's. */
  prepareHost(installer: Owner | undefined): Promise<void> {
    return prepareSharedCache(this.options.goCache, installer);
  }

  createEnvironment(root: string): Promise<void> {
    return createGoEnvironment(root);
  }

  seedWorkspace(workspace: string): Promise<void> {
    return seedGoWorkspace(workspace, this.toolchain.languageVersion);
  }

  /** The environment's module cache is there (looked at without following anything the session made). */
  async checkEnvironment(root: string): Promise<void> {
    if (!(await namesIn(root, [])).includes(GO_ENV.gopath))
      throw errors.environmentBroken('go', "the session's module cache (gopath/ of its environment) is missing; create a new session");
  }

  /**
   * The launcher of goRun.sh, with the session's go variables: modules only from its own module
   * cache (what pkg.install put there, so a module in the workspace can require them offline),
   * go.mod updated as imports need (`-mod=mod`).
   */
  runCommand(environment: string): CodeCommand {
    const { executable, version, goroot, languageVersion } = this.toolchain;
    return {
      command: ['/bin/sh', '-c', GO_RUN_SCRIPT, 'run.go', executable, `${version} ${goroot}`, environment, languageVersion],
      env: {
        PATH: `${dirname(executable)}:${SYSTEM_PATH}`,
        ...goVariables(environment),
        GOPROXY: `file://${environment}/${GO_ENV.modCache}/cache/download`,
        GOFLAGS: '-mod=mod',
      },
    };
  }

  warmCommand(): undefined {
    return undefined;
  }

  /** The modules the session's go.mod requires, as `module@version`, sorted (for checkpoint records). */
  async installedPackages(dirs: SessionRoots): Promise<string[]> {
    // The workspace's go.mod is the session's to write: only what its environment holds counts.
    const required = await readRequires(await moduleDirectory(dirs));
    const held = await Promise.all(required.map((m) => inModuleCache(dirs.environment, m)));
    return required
      .filter((_, i) => held[i])
      .map((m) => `${m.path}@${m.version}`)
      .sort();
  }

  /**
   * Adds modules to the session's module, in two steps that never mix powers:
   *
   * 1. fetch: the worker's installer uid, with network and the shared download cache, runs
   *    `go get` in a fresh module of its own (seeing neither workspace nor environment): the
   *    requested modules and what they need come from WORKER_GOPROXY only (no `direct`, no
   *    version control), and go get runs no module code (no build, no cgo, no go generate).
   * 2. add: the session's own uid, with the session's network policy, runs `go get` in the
   *    session's module (the workspace's) with the shared cache (read-only) as its only proxy:
   *    go.mod, go.sum and the session's module cache get what step 1 fetched, each zip checked
   *    against go.sum.
   *
   * Neither step reads the session's variables; `@latest` and version prefixes are pinned by
   * step 1, so step 2 adds exactly what was fetched. There is no checksum database: the proxy
   * is the operator's trust root, and go.sum then pins each module's hash for the session.
   */
  async install(sandbox: LanguageSandbox, requirements: string[], options: RunOptions): Promise<InstallResult> {
    // The first proxy of the list: go tries the next only after an answer that says "not here".
    const firstProxy = this.options.goProxy.split(/[,|]/)[0] ?? '';
    await requireReachable(firstProxy, 'WORKER_GOPROXY');
    const fetchDir = await sandbox.scratchDirectory('go-fetch-', 'installer');
    const goCache = await sandbox.installerCache(this.options.goCache);
    try {
      const fetched = await this.fetch(sandbox, requirements, fetchDir, goCache, options);
      if (fetched.exitCode !== 0) return { ...fetched, installed: undefined };
      const resolved = await readRequires(fetchDir);
      const pinned = requirements.map((line) => {
        const { path, version } = splitRequirement(line);
        const module = moduleOf(path, resolved);
        return module && module.path === path && version !== module.version ? `${path}@${module.version}` : line;
      });
      const added = await this.add(sandbox, pinned, goCache, options);
      const installed = added.exitCode === 0 ? await installedModules(sandbox.workspace.host, requirements) : undefined;
      return { ...added, installed };
    } finally {
      await removeTree(fetchDir);
    }
  }

  /** Step 1 of install: the modules and what they need into the shared cache, as the installer. */
  private fetch(sandbox: LanguageSandbox, requirements: string[], fetchDir: string, goCache: string, options: RunOptions): Promise<SandboxedResult> {
    const inside = (host: string, at: string) => (sandbox.isolate ? at : host);
    const dir = inside(fetchDir, INSIDE.fetch);
    // A fresh module of the installer's, so nothing of the session's go.mod reaches this step.
    const script = 'printf "module codegen.fetch\\n\\ngo %s\\n" "$1" > go.mod || exit 125; shift; exec "$0" get "$@"';
    const command = ['/bin/sh', '-c', script, this.toolchain.executable, this.toolchain.languageVersion, ...requirements];
    const env = {
      ...this.stepVariables(dir),
      GOMODCACHE: inside(goCache, INSIDE.goCache),
      GOPROXY: this.options.goProxy,
      ...proxyVariables(),
    };
    // A file: proxy is shown read-only at its own path.
    const proxyDirs = this.options.goProxy
      .split(/[,|]/)
      .filter((entry) => entry.startsWith('file:'))
      .map((entry) => new URL(entry).pathname);
    const mounts: Mount[] = [
      ...this.systemMounts,
      ...proxyDirs.map((path) => ({ host: path, inside: path, writable: false })),
      { host: goCache, inside: INSIDE.goCache, writable: true },
      { host: fetchDir, inside: INSIDE.fetch, writable: true },
    ];
    return sandbox.run({ command, cwd: dir, env, mounts, network: true, as: 'installer' }, options);
  }

  /**
   * Step 2 of install: the session's module gets them from the shared cache, as the session. Its
   * build cache is a fresh one, not the environment's gocache/ (which the session's code writes:
   * what it planted there must not steer go get while the whole environment is writable). The
   * module is the workspace's go.mod: made anew where the session removed it, or moved there
   * from the environment for a session made before the module lived in the workspace.
   */
  private async add(sandbox: LanguageSandbox, requirements: string[], goCache: string, options: RunOptions): Promise<SandboxedResult> {
    const envDir = sandbox.isolate ? sandbox.environment.inside : sandbox.environment.host;
    const workDir = sandbox.isolate ? sandbox.workspace.inside : sandbox.workspace.host;
    const cache = sandbox.isolate ? INSIDE.goCache : goCache;
    const buildCache = await sandbox.scratchDirectory('go-add-cache-', 'session');
    try {
      const env = {
        ...this.stepVariables(envDir),
        ...goVariables(envDir),
        GOCACHE: sandbox.isolate ? INSIDE.addCache : buildCache,
        GOPROXY: `file://${cache}/cache/download`,
      };
      const mounts: Mount[] = [
        ...this.systemMounts,
        { host: sandbox.environment.host, inside: sandbox.environment.inside, writable: true },
        { host: sandbox.workspace.host, inside: sandbox.workspace.inside, writable: true },
        { host: goCache, inside: INSIDE.goCache, writable: false },
        { host: buildCache, inside: INSIDE.addCache, writable: true },
      ];
      const command = ['/bin/sh', '-c', ADD_SCRIPT, this.toolchain.executable, envDir, newGoMod(this.toolchain.languageVersion), ...requirements];
      return await sandbox.run({ command, cwd: workDir, env, mounts, network: sandbox.allowNetwork, as: 'session' }, options);
    } finally {
      await removeTree(buildCache);
    }
  }

  /**
   * What both install steps run with, whatever the session's variables say: no go env file, no
   * workspace file, no toolchain switch, no version control, no checksum database, no cgo;
   * module cache directories left writable (see goEnvironment.ts), scratch in `dir`.
   */
  private stepVariables(dir: string): Record<string, string> {
    return {
      PATH: `${dirname(this.toolchain.executable)}:${SYSTEM_PATH}`,
      HOME: dir,
      LANG: 'C.UTF-8',
      GOENV: 'off',
      GOWORK: 'off',
      GOTOOLCHAIN: 'local',
      GOFLAGS: '-mod=mod -modcacherw',
      GOSUMDB: 'off',
      GOVCS: '*:off',
      CGO_ENABLED: '0',
      GOPATH: `${dir}/.gopath`,
      GOCACHE: `${dir}/.gocache`,
    };
  }
}

/**
 * Install's step 2 in the workspace (arguments: go, the environment, a new go.mod, the
 * requirements): the module there, else a legacy session's moved from the environment, else a
 * new one; then go get.
 */
const ADD_SCRIPT = [
  'if [ ! -e go.mod ] && [ ! -L go.mod ]; then',
  '  if [ -f "$1/go.mod" ]; then cp "$1/go.mod" . && { [ ! -f "$1/go.sum" ] || cp "$1/go.sum" .; } && rm -f "$1/go.mod" "$1/go.sum" || exit 125',
  '  else printf %s "$2" > go.mod || exit 125; fi',
  'fi',
  'go=$0; shift 2; exec "$go" get "$@"',
].join('\n');

/** Where a session's module is: its workspace, or a legacy session's environment while its workspace has none. */
async function moduleDirectory(dirs: SessionRoots): Promise<string> {
  const inWorkspace = (await namesIn(dirs.workspace, [])).includes(GO_MODULE.goMod);
  const legacy = !inWorkspace && (await namesIn(dirs.environment, [])).includes(GO_MODULE.goMod);
  return legacy ? dirs.environment : dirs.workspace;
}

/** Whether the session's module cache holds `module` (its zip, where go puts a download: path letters escaped). */
async function inModuleCache(environment: string, module: ModuleRequirement): Promise<boolean> {
  const escape = (text: string) => text.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`);
  const segments = [...GO_ENV.modCache.split('/'), 'cache', 'download', ...escape(module.path).split('/'), '@v', `${escape(module.version)}.zip`];
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return false;
  return (await lstat(join(environment, ...segments)).catch(() => undefined))?.isFile() ?? false;
}

/** The requirements of the go.mod in `dir` (bounded, no link followed); [] when it cannot be read. */
async function readRequires(dir: string): Promise<ModuleRequirement[]> {
  const text = await readSmallFileNoFollow(dir, [GO_MODULE.goMod], MAX_GO_MOD_BYTES);
  return text === undefined ? [] : goModRequires(text);
}

/** The session's required modules, those providing a requested line marked requested. */
async function installedModules(envRoot: string, requirements: string[]): Promise<InstalledPackage[]> {
  const modules = await readRequires(envRoot);
  const requested = new Set(requirements.map((line) => moduleOf(splitRequirement(line).path, modules)).filter((m) => m !== undefined));
  return modules.map((m) => ({ name: m.path, version: m.version, requested: requested.has(m) }));
}
