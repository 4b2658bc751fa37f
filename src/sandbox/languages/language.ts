import type { Owner } from '../../storage/owner.js';
import type { Mount } from '../confine/launcher.js';
import type { RunOptions, SandboxedResult } from '../process/processSpec.js';

/** PATH of every sandboxed process, after what its language puts first. */
export const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin';

/** Whose powers a process runs with: the session's own uid, or the worker's installer uid (the shared caches). */
export type RunAs = 'session' | 'installer';

/** A directory of the session: where it is on the host, and where its processes see it. */
export interface SessionPath {
  host: string;
  inside: string;
}

/** One confined process a language asks the session's sandbox for. */
export interface LanguageStep {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  mounts: Mount[];
  network: boolean;
  as: RunAs;
  /** Refuse the step any new process (threads still start): for a step that must run no program but its own. */
  denyProcesses?: boolean;
}

/** What a language gets of a session's sandbox while it installs packages. */
export interface LanguageSandbox {
  /** Whether processes run in a bubblewrap sandbox (paths `inside` differ from the host's). */
  readonly isolate: boolean;
  /** WORKER_ALLOW_NETWORK: whether the session's own processes may reach the network. */
  readonly allowNetwork: boolean;
  readonly workspace: SessionPath;
  readonly environment: SessionPath;
  run(step: LanguageStep, options: RunOptions): Promise<SandboxedResult>;
  /**
   * Whose installs an installer's caches and the wheel store are shared with (WORKER_CACHE_SCOPE):
   * undefined for every session's (shared), else a key of the session's user_id.
   */
  readonly cacheKey: string | undefined;
  /** The installer's cache under `base` for this session: `base` itself when shared, its user's own below it, made for the installer. */
  installerCache(base: string): Promise<string>;
  /** A fresh directory on the session's disk, handed to `as` (removed by the caller); RESOURCE_EXHAUSTED when the disk is full. */
  scratchDirectory(prefix: string, as: RunAs): Promise<string>;
}

/** A session's workspace and environment, as host paths. */
export interface SessionRoots {
  workspace: string;
  environment: string;
}

export interface InstalledPackage {
  name: string;
  version: string | undefined;
  /** Named in the request (not only a dependency). */
  requested: boolean;
}

export interface InstallResult extends SandboxedResult {
  /** What the installer says it installed now; undefined when it cannot say. */
  installed: InstalledPackage[] | undefined;
}

/** pkg.install in a language's terms: its requirement lines, its output's stages, what it names as installed. */
export interface PackageInstaller {
  /** How the installer's output lines are labelled ('pip', 'npm', 'go'). */
  readonly name: string;
  /** pkg.install's `requirements` text as the installer's lines; INVALID_ARGUMENT when malformed. */
  parse(text: string): string[];
  /** Output lines that mark a stage of an install, how far along it is, and the stage's name. */
  readonly stages: readonly (readonly [RegExp, number, string])[];
  /** Its stderr lines that say why an install failed (the last one is the call's error). */
  readonly errorLine: RegExp;
  /** The packages a successful install names as installed: each requested line's package. */
  installedNames(requirements: readonly string[], installed: InstalledPackage[] | undefined): string[];
}

/** How to run code given on stdin: the command, what it adds to the environment, and what the sandbox shows it besides workspace and environment. */
export interface CodeCommand {
  command: string[];
  env: Record<string, string>;
  mounts?: Mount[];
}

/**
 * Everything about a session that belongs to its language: the interpreter, the layout of the
 * session's environment, the command that runs code, the package installer, and what a
 * checkpoint records of installed packages. The sandbox, limits and uids are the same for
 * every language; a second one is one more module implementing this (see python/).
 */
export interface Language {
  /** As CreateSession's config.language names it. */
  readonly name: string;
  /** What the worker's log and the coordinator are told of it (interpreter, version). */
  describe(): Record<string, string>;
  /** Host directories every process of the language must see, read-only (its installation). */
  readonly systemMounts: Mount[];
  /** Directories of its toolchain a shell of any session finds on PATH, when not already on SYSTEM_PATH. */
  readonly toolchainPath: string[];
  /** Readies what the language keeps on the host across sessions (a package cache), for the installer uid. */
  prepareHost(installer: Owner | undefined): Promise<void>;
  /**
   * The sandbox's self-check: code printing `42`, whether /etc/shadow can be seen, and the uid,
   * and what its output starts with when the host is hidden (isolated) and when it is not.
   */
  readonly selfCheck: { code: string; isolated: string; plain: string };
  /** What its programs print on stderr when an allocation fails: killed_by memory where no cgroup counts OOM kills. */
  readonly outOfMemory: RegExp;
  /** Lays out a new, empty environment at `root` (a host path the worker controls). */
  createEnvironment(root: string): Promise<void>;
  /** Writes what a new session's workspace starts with (Go's module), when the language has any; the caller hands it to the session. */
  seedWorkspace?(workspace: string): Promise<void>;
  /** Throws (FAILED_PRECONDITION) when the environment at `root` can no longer run code. */
  checkEnvironment(root: string): Promise<void>;
  /** Running code from stdin with the environment at `environment` (as processes see it; `isolated`: in a sandbox). */
  runCommand(environment: string, isolated: boolean): CodeCommand;
  /** A warm interpreter's launch (listening on `socket`), when the language has one: it forks each call and runs the code itself. */
  warmCommand(environment: string, socket: string): string[] | undefined;
  /**
   * A plain zygote's launch, for sessions of any language whose own has no warm interpreter: it
   * forks each call and execs the call's program (a shell, `node -`), so a call pays no sandbox start.
   */
  zygoteCommand?(socket: string): string[];
  /** What pkg.install is in this language. */
  readonly installer: PackageInstaller;
  /** Where its installer's shared cache is inside a sandbox (a write error naming it: the caches' disk is full). */
  readonly installerCacheInside: string;
  /** Installs `requirements` (lines installer.parse made) into the session's environment; the caller runs one at a time. */
  install(sandbox: LanguageSandbox, requirements: string[], options: RunOptions): Promise<InstallResult>;
  /** The packages a session has installed as `name==version`, sorted (for checkpoint records). */
  installedPackages(roots: SessionRoots): Promise<string[]>;
  /** Paths in the environment a checkpoint leaves out: remade for the restoring worker's interpreter (or its caches). */
  readonly machineSpecific: readonly string[];
  /**
   * Directories in the environment the session's code may write, though the rest of it is
   * read-only to code: a build cache (Go's) that every run fills. Each is mounted writable over
   * the read-only environment. A language with any must run no code the session controls
   * while the environment is writable (its pkg.install), or that code could swap one for a link.
   */
  readonly writablePaths: readonly string[];
}
