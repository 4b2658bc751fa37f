import { randomBytes } from 'node:crypto';
import { chown, lstat, mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../logger.js';
import { removeTree } from '../storage/removeTree.js';
import { setUpCgroups, type Cgroup, type CgroupSupport } from './cgroups.js';
import { mountWorkspaceQuota, unmountWorkspaceQuota } from './diskQuota.js';
import { findOnPath } from './hostTools.js';
import type { HostTools } from './launcher.js';
import { createPythonEnvironment, pythonEnvironmentAt } from './pythonEnvironment.js';
import type { PythonInterpreter } from './pythonInterpreter.js';
import { SessionSandbox, type SessionLimits } from './sessionSandbox.js';
import { sandboxSeccompProgram } from './seccomp.js';
import { claimUidRange, type UidRange } from './uidRange.js';

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
  /** First uid of this worker's range (WORKER_UID_BASE); undefined: claim a free one. */
  uidBase: number | undefined;
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

/**
 * The worker's side of the sandbox: what the host offers (root, cgroups, bubblewrap), the uids
 * handed to sessions, and the making and unmaking of each session's sandbox.
 */
export class SandboxHost {
  private readonly usedSlots = new Set<number>();
  private lastSlot = 0;

  private constructor(
    readonly options: SandboxHostOptions,
    readonly cgroups: CgroupSupport | undefined,
    readonly isRoot: boolean,
    readonly tools: HostTools,
    /** The seccomp filter every sandboxed process gets (undefined on an architecture without one). */
    readonly seccomp: Buffer | undefined,
    /** Host uids of this worker's sessions (root workers isolating only). */
    private readonly uids: UidRange | undefined,
  ) {}

  static async create(options: SandboxHostOptions): Promise<SandboxHost> {
    const isRoot = process.getuid?.() === 0;
    const bwrap = await findOnPath('bwrap');
    if (options.mode === 'bwrap' && !bwrap) {
      throw new SandboxUnavailableError('bubblewrap (bwrap) is not installed: install the Debian package bubblewrap (`make run` does) or, knowing that code then runs unisolated, set WORKER_SANDBOX=none');
    }
    const tools = { bwrap, setpriv: (await findOnPath('setpriv')) ?? 'setpriv', prlimit: (await findOnPath('prlimit')) ?? 'prlimit', env: (await findOnPath('env')) ?? '/usr/bin/env' };
    const uids = isRoot && options.mode === 'bwrap' ? await claimUidRange((await findOnPath('flock')) ?? 'flock', options.uidBase) : undefined;
    try {
      // Scratch space of pkg.install steps; what an earlier run left there is dropped.
      await removeTree(join(options.dataDir, 'scratch'));
      await mkdir(join(options.dataDir, 'scratch'), { recursive: true });
      await preparePipCache(join(options.dataDir, 'pip-cache'), uids ? { uid: uids.base, gid: uids.base } : undefined);
      const cgroups = isRoot ? await setUpCgroups() : undefined;
      const host = new SandboxHost(options, cgroups, isRoot, tools, sandboxSeccompProgram(), uids);
      await host.selfCheck();
      return host;
    } catch (err) {
      uids?.lock.release();
      throw err;
    }
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
      syscall_filter: this.seccomp ? 'seccomp (keyrings, bpf, io_uring, userfaultfd, perf events, namespaces refused)' : `NONE (no filter for ${process.arch})`,
      session_uids: this.uids ? `${this.uids.base + 1}-${this.uids.base + this.uids.size - 1} (claimed for this worker; pip's fetching step: ${this.uids.base})` : "the worker's own",
    };
  }

  /**
   * The slow part of making a session's sandbox, done ahead of time for spare sessions: an owner
   * uid, the workspace handed to it, the Python environment, and an unlimited cgroup.
   */
  async prepare(dirs: { workspace: string; environment: string }): Promise<PreparedSandbox> {
    const slot = this.takeSlot();
    // Own uids only where the sandbox hides the host: without it, the code must reach host paths.
    const uids = this.uids;
    const owner = uids ? { uid: uids.base + slot, gid: uids.base + slot } : undefined;
    const installer = uids ? { uid: uids.base, gid: uids.base } : undefined;
    let cgroup: Cgroup | undefined;
    try {
      // The three parts do not depend on each other: made side by side.
      const made = await Promise.all([
        owner ? chown(dirs.workspace, owner.uid, owner.gid) : undefined,
        createPythonEnvironment(dirs.environment, this.options.interpreter).then(() => (owner ? chownTree(dirs.environment, owner.uid, owner.gid) : undefined)),
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

  /** Removes the worker's cgroup subtree and gives its uids back (at shutdown, after every session is gone). */
  async close(): Promise<void> {
    await this.cgroups?.root.destroy().catch(() => undefined);
    this.uids?.lock.release();
  }

  /** prepare() then activate(): a session's sandbox made on the spot. */
  async createSession(sessionId: string, dirs: { workspace: string; environment: string }, env: Record<string, string>, limits: SessionLimits): Promise<SessionSandbox> {
    return this.activate(await this.prepare(dirs), sessionId, dirs, env, limits);
  }

  /**
   * The next free slot after the last one given, round the range: a uid comes back to a new
   * session only after every other one has been used, so nothing a session left with its uid
   * (in the kernel or on disk) meets the next session for a long while.
   */
  private takeSlot(): number {
    const size = this.uids?.size ?? Number.MAX_SAFE_INTEGER;
    for (let tried = 1; tried < size; tried++) {
      const slot = (this.lastSlot % (size - 1)) + 1;
      this.lastSlot = slot;
      if (this.usedSlots.has(slot)) continue;
      this.usedSlots.add(slot);
      return slot;
    }
    throw new Error(`no free session uid: all ${size - 1} of this worker's are in use`);
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
      await removeTree(scratch);
    }
  }
}

/**
 * The shared pip cache belongs to the fetching uid (the only writer). One left by a run with
 * other uids is dropped rather than re-owned: it is only a cache.
 */
async function preparePipCache(dir: string, installer: { uid: number; gid: number } | undefined): Promise<void> {
  const st = await lstat(dir).catch(() => undefined);
  if (st && (!st.isDirectory() || (installer && st.uid !== installer.uid))) await removeTree(dir);
  await mkdir(dir, { recursive: true });
  if (installer) await chown(dir, installer.uid, installer.gid);
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await chown(dir, uid, gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path, uid, gid);
    else if (!entry.isSymbolicLink()) await chown(path, uid, gid);
  }
}
