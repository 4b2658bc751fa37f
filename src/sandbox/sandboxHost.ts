import { randomBytes } from 'node:crypto';
import { access, chown, constants, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import type { Logger } from '../logger.js';
import { setUpCgroups, type Cgroup, type CgroupSupport } from './cgroups.js';
import { mountWorkspaceQuota, unmountStaleQuotas, unmountWorkspaceQuota } from './diskQuota.js';
import type { HostTools } from './launcher.js';
import { createPythonEnvironment, pythonEnvironmentAt } from './pythonEnvironment.js';
import type { PythonInterpreter } from './pythonInterpreter.js';
import { SessionSandbox, type SessionLimits } from './sessionSandbox.js';

export type SandboxMode = 'bwrap' | 'none';

export interface SandboxHostOptions {
  mode: SandboxMode;
  allowNetwork: boolean;
  interpreter: PythonInterpreter;
  pipIndexUrl: string | undefined;
  dataDir: string;
  /** Processes one session may have at once. */
  maxProcesses: number;
  /** Output (both streams) a task may print before it is killed. */
  maxTaskOutputBytes: number;
  /** Keep a warm interpreter per session and fork each run.python call from it. */
  warmInterpreter: boolean;
  logger: Logger;
}

/** A sandbox made ahead of its session (see SandboxHost.prepare). */
export interface PreparedSandbox {
  slot: number;
  owner: { uid: number; gid: number } | undefined;
  installer: { uid: number; gid: number } | undefined;
  cgroup: Cgroup | undefined;
}

export class SandboxUnavailableError extends Error {
  override name = 'SandboxUnavailableError';
}

/** Host uids: the installer (pip) uses BASE_UID, session n uses BASE_UID + n. */
const BASE_UID = 200_000;

/**
 * The worker's side of the sandbox: what the host offers (root, cgroups, bubblewrap), the uids
 * handed to sessions, and the making and unmaking of each session's sandbox.
 */
export class SandboxHost {
  private readonly usedSlots = new Set<number>();

  private constructor(
    readonly options: SandboxHostOptions,
    readonly cgroups: CgroupSupport | undefined,
    readonly isRoot: boolean,
    readonly tools: HostTools,
  ) {}

  static async create(options: SandboxHostOptions): Promise<SandboxHost> {
    const isRoot = process.getuid?.() === 0;
    const bwrap = await findOnPath('bwrap');
    if (options.mode === 'bwrap' && !bwrap) {
      throw new SandboxUnavailableError('bubblewrap (bwrap) is not installed: install the Debian package bubblewrap (`make run` does) or, knowing that code then runs unisolated, set WORKER_SANDBOX=none');
    }
    const tools = { bwrap, setpriv: (await findOnPath('setpriv')) ?? 'setpriv', prlimit: (await findOnPath('prlimit')) ?? 'prlimit' };
    await mkdir(join(options.dataDir, 'pip-cache'), { recursive: true });
    await unmountStaleQuotas(join(options.dataDir, 'sessions'));
    const cgroups = isRoot ? await setUpCgroups() : undefined;
    const host = new SandboxHost(options, cgroups, isRoot, tools);
    if (isRoot && options.mode === 'bwrap') await chown(join(options.dataDir, 'pip-cache'), BASE_UID, BASE_UID);
    await host.selfCheck();
    return host;
  }

  /** One line for the startup log: what is isolated and what is limited, and how. */
  describe(): Record<string, unknown> {
    const controllers = this.cgroups?.controllers ?? [];
    return {
      sandbox: this.options.mode,
      network_for_user_code: this.options.allowNetwork,
      cgroups: this.cgroups ? `${this.cgroups.version} (${controllers.join(', ')})` : 'none',
      memory_limit: controllers.includes('memory') ? 'cgroup' : 'RLIMIT_AS',
      cpu_limit: controllers.includes('cpu') ? 'cgroup cpu quota' : 'NOT ENFORCED (no writable cpu cgroup)',
      process_limit: controllers.includes('pids') ? 'cgroup pids' : this.isRoot ? 'RLIMIT_NPROC (per-session uid)' : 'NOT ENFORCED',
      disk_limit: this.isRoot ? 'size-capped tmpfs workspace' : 'NOT ENFORCED (needs root)',
      session_uids: this.isRoot && this.options.mode === 'bwrap' ? `${BASE_UID + 1}+` : 'the worker\'s own',
    };
  }

  /**
   * The slow part of making a session's sandbox, done ahead of time for spare sessions: an owner
   * uid, the workspace handed to it, the Python environment, and an unlimited cgroup.
   */
  async prepare(dirs: { workspace: string; environment: string }): Promise<PreparedSandbox> {
    const slot = this.takeSlot();
    // Own uids only where the sandbox hides the host: without it, the code must reach host paths.
    const ownUids = this.isRoot && this.options.mode === 'bwrap';
    const owner = ownUids ? { uid: BASE_UID + slot, gid: BASE_UID + slot } : undefined;
    const installer = ownUids ? { uid: BASE_UID, gid: BASE_UID } : undefined;
    let cgroup: Cgroup | undefined;
    try {
      // The three parts do not depend on each other: made side by side.
      const made = await Promise.all([
        owner ? chown(dirs.workspace, owner.uid, owner.gid) : undefined,
        createPythonEnvironment(dirs.environment, this.options.interpreter).then(() => (installer ? chownTree(dirs.environment, installer.uid, installer.gid) : undefined)),
        this.cgroups?.root.child(`spare-${randomBytes(6).toString('hex')}`, { maxProcesses: this.options.maxProcesses }).then((group) => (cgroup = group)),
      ]);
      return { slot, owner, installer, cgroup: made[2] };
    } catch (err) {
      this.usedSlots.delete(slot);
      await cgroup?.destroy().catch(() => undefined);
      throw err;
    }
  }

  /** Makes a prepared sandbox the session's: its name, limits and (if capped) workspace mount. */
  async activate(prepared: PreparedSandbox, sessionId: string, dirs: { workspace: string; environment: string }, env: Record<string, string>, limits: SessionLimits): Promise<SessionSandbox> {
    let quota = false;
    try {
      const cgroup = await prepared.cgroup?.rename(sessionId);
      prepared.cgroup = cgroup;
      await cgroup?.setLimits({ memoryBytes: limits.maxMemoryMb * 1024 * 1024, cpuPercent: limits.maxCpuPercent });
      if (limits.maxDiskMb > 0) {
        if (!this.isRoot) throw new Error('max_disk_mb needs a worker running as root to enforce it');
        await mountWorkspaceQuota(dirs.workspace, limits.maxDiskMb, prepared.owner);
        quota = true;
      }
      const environment = pythonEnvironmentAt(dirs.environment, this.options.interpreter);
      const controlDir = join(dirname(dirs.workspace), 'ctl');
      const parts = { workspace: dirs.workspace, environment, env, owner: prepared.owner, installer: prepared.installer, cgroup, limits, quota, controlDir };
      return new SessionSandbox(this, parts, () => this.usedSlots.delete(prepared.slot));
    } catch (err) {
      if (quota) await unmountWorkspaceQuota(dirs.workspace);
      await this.discard(prepared);
      throw err;
    }
  }

  /** Gives back what a prepared sandbox holds that was never activated. */
  async discard(prepared: PreparedSandbox): Promise<void> {
    this.usedSlots.delete(prepared.slot);
    await prepared.cgroup?.destroy().catch(() => undefined);
  }

  /** Removes the worker's cgroup subtree (at shutdown, after every session is gone). */
  async close(): Promise<void> {
    await this.cgroups?.root.destroy().catch(() => undefined);
  }

  /** prepare() then activate(): a session's sandbox made on the spot. */
  async createSession(sessionId: string, dirs: { workspace: string; environment: string }, env: Record<string, string>, limits: SessionLimits): Promise<SessionSandbox> {
    return this.activate(await this.prepare(dirs), sessionId, dirs, env, limits);
  }

  private takeSlot(): number {
    let slot = 1;
    while (this.usedSlots.has(slot)) slot++;
    this.usedSlots.add(slot);
    return slot;
  }

  /** Proves the sandbox runs Python (and, isolating, hides the host) before any session is made. */
  private async selfCheck(): Promise<void> {
    const scratch = await mkdtemp(join(this.options.dataDir, 'self-check-'));
    try {
      await mkdir(join(scratch, 'workspace'));
      const sandbox = await this.createSession('self-check', { workspace: join(scratch, 'workspace'), environment: join(scratch, 'env') }, {}, { maxMemoryMb: 0, maxCpuPercent: 0, maxDiskMb: 0 });
      try {
        const probe = 'import os\nprint(6 * 7, os.path.exists("/etc/shadow"), os.getuid())';
        const result = await sandbox.runPython(probe, { signal: AbortSignal.timeout(30_000), maxCaptureBytes: 4096, onLine: () => undefined }, {});
        const expected = this.options.mode === 'bwrap' ? '42 False' : '42';
        if (result.exitCode !== 0 || !result.stdout.text.startsWith(expected)) {
          throw new SandboxUnavailableError(
            `the ${this.options.mode} sandbox does not work on this host (exit ${result.exitCode}: ${(result.stderr.text || result.stdout.text).trim()}). ` +
              (this.options.mode === 'bwrap' ? 'Install bubblewrap (`make run` does) or, knowing that code then runs unisolated, set WORKER_SANDBOX=none.' : ''),
          );
        }
      } finally {
        await sandbox.dispose();
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const candidate = join(dir, name);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return undefined;
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await chown(dir, uid, gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path, uid, gid);
    else if (!entry.isSymbolicLink()) await chown(path, uid, gid);
  }
}
