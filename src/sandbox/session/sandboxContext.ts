import type { Logger } from '../../logger.js';
import type { UsableCgroups } from '../confine/cgroups.js';
import type { HostTools } from '../confine/launcher.js';
import type { Language } from '../languages/language.js';
import type { DiskBudget } from '../../storage/diskBudget.js';
import type { NetworkSettings } from '../network/networkPolicy.js';
import type { CaBundle } from '../network/caBundle.js';
import type { CacheDisk } from '../caches/cacheDisk.js';

export type SandboxMode = 'bwrap' | 'none';

export interface SandboxHostOptions {
  mode: SandboxMode;
  /** Sessions' networks: the default and the ceiling of their policies, and the resolvers their DNS gate asks. */
  network: NetworkSettings & {
    dnsServers: readonly string[];
    /** The URLs pkg.install's fetching step fetches from (network/installerEndpoints.ts): all it may reach. */
    installerSources: readonly string[];
  };
  /** WORKER_CA_BUNDLE: a PEM file of CAs to trust besides the system's (a TLS-intercepting proxy's). */
  caBundle?: string | undefined;
  /** The languages the worker offers (WORKER_LANGUAGES); the first is the default, and spare sessions' own. */
  languages: readonly Language[];
  /** The worker's directories the sandbox uses (see storage/dataDirectory.ts). */
  dirs: { scratch: string; diskTemplates: string; network: string };
  /** Processes one session may have at once. */
  maxProcesses: number;
  /** Output (both streams) a task may print before it is killed. */
  maxTaskOutputBytes: number;
  /** Background processes (run.shell background): running at once per session, output kept per process. */
  background?: { maxRunning: number; outputBytes: number } | undefined;
  /** Keep a warm process per session (its language's interpreter, or a plain zygote) and fork every run call (run.python, run.node, run.go, run.shell) from it. */
  warmInterpreter: boolean;
  /** WORKER_QUICK_CGROUP_MOVES: make moving a process into a cgroup quick, host-wide (confine/favorDynmods.ts). */
  quickCgroupMoves?: boolean | undefined;
  /** WORKER_ALLOW_UNENFORCED_LIMITS: start even where memory, CPU or process limits cannot be enforced (development). */
  allowUnenforcedLimits?: boolean | undefined;
  /** First uid of this worker's range (WORKER_UID_BASE); undefined: claim a free one. */
  uidBase: number | undefined;
  /** WORKER_CACHE_SCOPE: installers' caches and the wheel store shared by all sessions, or each user's own. */
  cacheScope?: 'shared' | 'user' | undefined;
  /** Where each session's disk image is reserved before it is made; undefined: nothing reserved. */
  diskBudget?: DiskBudget | undefined;
  /** The package caches' own disk (WORKER_CACHE_DISK_MB): installs make room in it; undefined: unbounded. */
  cacheDisk?: CacheDisk | undefined;
  logger: Logger;
}

/**
 * What a session's sandbox needs of the host it runs on: the worker's sandbox settings and what
 * the host offers. SandboxHost provides it; a SessionSandbox sees nothing else of the host.
 */
export interface SandboxContext {
  readonly options: SandboxHostOptions;
  readonly cgroups: UsableCgroups | undefined;
  readonly tools: HostTools;
  /** The seccomp filter every sandboxed process gets (undefined on an architecture without one). */
  readonly seccomp: Buffer | undefined;
  /** WORKER_CA_BUNDLE's CAs, for fetching steps and session code with a network; undefined: none given. */
  readonly caBundle: CaBundle | undefined;
}
