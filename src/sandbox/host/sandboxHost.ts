import { randomBytes } from 'node:crypto';
import { sweepRelayDirectories } from '../session/portRelay.js';
import { chown, mkdir, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { removeTree } from '../../storage/removeTree.js';
import type { SessionDirectories } from '../../storage/workspaceStore.js';
import { setUpCgroups, type Cgroup, type CgroupSupport, type UsableCgroups } from '../confine/cgroups.js';
import { favorDynamicModifications, type DynmodsOutcome } from '../confine/favorDynmods.js';
import { unenforcedLimits, unenforcedLimitsMessage, type MissingController } from '../confine/cgroupDelegation.js';
import { imageBytes, isIdmappedMount, makeDiskImage, mountDiskImage, probeDiskImages, unmountDiskImage, usedBytes } from '../confine/diskImage.js';
import { copyFrozen, probeCopyMethod, thawIfLeftFrozen, type CopyMethod } from '../confine/diskFork.js';
import { DiskHelper } from '../confine/diskHelper.js';
import { markShared, type Reservation } from '../../storage/diskBudget.js';
import { findOnPath, runHostTool } from '../process/hostTools.js';
import type { Language } from '../languages/language.js';
import type { HostTools } from '../confine/launcher.js';
import type { SandboxContext, SandboxHostOptions } from '../session/sandboxContext.js';
import type { SessionLimits } from '../process/processSpec.js';
import { SessionSandbox } from '../session/sessionSandbox.js';
import { sandboxSeccompProgram } from '../confine/seccomp.js';
import { claimUidRange, UID_LOCK_DIR, type UidRange } from '../confine/uidRange.js';
import type { Owner } from '../../storage/owner.js';
import { errors, messageOf } from '../../errors.js';
import { metrics } from '../../telemetry/metrics.js';
import { NetworkHost, type SessionNamespace } from '../network/networkHost.js';
import { installerEndpoints } from '../network/installerEndpoints.js';
import { CaBundleError, prepareCaBundle, type CaBundle } from '../network/caBundle.js';
import { SandboxUnavailableError, SelfChecks } from './selfChecks.js';
import { NETWORK_MODES, type NetworkModeName, type SessionNetworkPolicy } from '../network/networkPolicy.js';

/** A sandbox made ahead of its session (see SandboxHost.prepare). */
export interface PreparedSandbox {
  slot: number;
  owner: Owner | undefined;
  installer: Owner | undefined;
  cgroup: Cgroup | undefined;
  /** Whose environment it holds. */
  language: Language;
  /** The size of its disk image, MB (0: none), and what the empty filesystem uses itself. */
  diskMb: number;
  diskBaselineBytes: number;
  /** Whose its files are on the disk itself, when an idmapped mount shows them as the owner's. */
  ownerOnDisk?: number | undefined;
  /** Its network namespace, made ahead where the worker gives sessions networks (loopback alone where it gives none). */
  network: SessionNamespace | undefined;
  /** Settles once a namespace made with a way out has lost it (a session with no network): its processes wait for it. */
  isolated?: Promise<void> | undefined;
}

/** What SandboxHost.create takes: its options, with the languages possibly still being resolved. */
export type SandboxHostStart = Omit<SandboxHostOptions, 'languages'> & { languages: readonly Language[] | Promise<readonly Language[]> };

/**
 * The worker's side of the sandbox: what the host offers (root, cgroups, bubblewrap), the uids
 * handed to sessions, and the making and unmaking of each session's sandbox.
 */
export class SandboxHost implements SandboxContext {
  private readonly usedSlots = new Set<number>();
  private readonly checks: SelfChecks;
  private lastSlot = 0;
  /** Whether idmapped mounts work here: known after the first try (undefined before). */
  private idmaps: boolean | undefined;

  private constructor(
    readonly options: SandboxHostOptions,
    readonly cgroups: UsableCgroups | undefined,
    /** Limit controllers sessions go without here (WORKER_ALLOW_UNENFORCED_LIMITS let the worker start), and why. */
    readonly unenforcedLimits: MissingController[],
    readonly isRoot: boolean,
    readonly tools: HostTools,
    /** The seccomp filter every sandboxed process gets (undefined on an architecture without one). */
    readonly seccomp: Buffer | undefined,
    /** Host uids of this worker's sessions (root workers isolating only). */
    private readonly uids: UidRange | undefined,
    /** Why sessions cannot have disk images here; undefined when they can. */
    private readonly diskImageProblem: string | undefined,
    /** Sessions' networks; undefined where the worker gives none (networkProblem says why). */
    private readonly networkHost: NetworkHost | undefined,
    private readonly networkProblem: string | undefined,
    readonly caBundle: CaBundle | undefined,
    /** How session disks are copied for forks on this data directory. */
    readonly copyMethod: CopyMethod,
    /** Disk images copied and mounted, reflinks and idmapped mounts (confine/diskHelper.ts): cp and mount(8) cost tens of milliseconds a session. */
    private readonly disks: DiskHelper,
  ) {
    const none = { maxMemoryMb: 0, maxCpuPercent: 0, maxDiskMb: 0 };
    this.checks = new SelfChecks({
      languages: options.languages,
      mode: options.mode,
      scratch: options.dirs.scratch,
      logger: options.logger,
      makeSandbox: (id, dirs, language) => this.createSession(id, dirs, {}, none, language, { mode: 'none', allow: [] }),
    });
  }

  static async create(start: SandboxHostStart): Promise<SandboxHost> {
    // Awaited after the steps that do not need them; a failure meanwhile must not leave it unhandled.
    const resolving = Promise.resolve(start.languages);
    resolving.catch(() => undefined);
    const isRoot = process.getuid?.() === 0;
    const bwrap = await findOnPath('bwrap');
    if (start.mode === 'bwrap' && !bwrap) {
      throw new SandboxUnavailableError(
        'bubblewrap (bwrap) is not installed: install the Debian package bubblewrap (`make run` does) or, knowing that code then runs unisolated, set WORKER_SANDBOX=none',
      );
    }
    const [setpriv, prlimit, env, nsenter, flock] = await Promise.all(['setpriv', 'prlimit', 'env', 'nsenter', 'flock'].map(findOnPath));
    await sweepRelayDirectories();
    const tools = { bwrap, setpriv: setpriv ?? 'setpriv', prlimit: prlimit ?? 'prlimit', env: env ?? '/usr/bin/env', nsenter: nsenter ?? 'nsenter' };
    const uids = isRoot && start.mode === 'bwrap' ? await claimUidRange(flock ?? 'flock', start.uidBase) : undefined;
    const disks = new DiskHelper();
    try {
      // Scratch space of pkg.install steps; what an earlier run left there is dropped.
      await removeTree(start.dirs.scratch);
      await mkdir(start.dirs.scratch, { recursive: true });
      const { languages, cgroups, diskImageProblem, caBundle, network, copyMethod } = await hostResources(start, resolving, uids, isRoot, disks);
      const options: SandboxHostOptions = { ...start, languages };
      const unenforced = unenforcedLimits(cgroups, isRoot ? 'no cgroupfs is mounted at /sys/fs/cgroup' : 'the worker is not running as root');
      try {
        if (unenforced.length > 0 && !start.allowUnenforcedLimits) throw new SandboxUnavailableError(unenforcedLimitsMessage(unenforced));
        for (const language of options.languages) await language.prepareHost(uids ? { uid: uids.base, gid: uids.base } : undefined);
        const usable = cgroups?.root ? { ...cgroups, root: cgroups.root } : undefined;
        const host = new SandboxHost(
          options,
          usable,
          unenforced,
          isRoot,
          tools,
          sandboxSeccompProgram(),
          uids,
          diskImageProblem,
          network.host,
          network.problem,
          caBundle,
          copyMethod,
          disks,
        );
        await host.checks.checkDefault();
        return host;
      } catch (err) {
        await network.host?.close();
        await cgroups?.root?.destroy().catch(() => undefined);
        throw err;
      }
    } catch (err) {
      disks.close();
      uids?.lock.release();
      throw err;
    }
  }

  /** The network modes sessions may ask for here: up to WORKER_NETWORK_MAX where networks can be made, else none only. */
  get networkModes(): NetworkModeName[] {
    const widest = this.networkHost ? NETWORK_MODES.indexOf(this.options.network.maxMode) : 0;
    return NETWORK_MODES.slice(0, widest + 1);
  }

  /** One line for the startup log: what is isolated and what is limited, and how. */
  describe(): Record<string, unknown> {
    const controllers = this.cgroups?.controllers ?? [];
    return {
      sandbox: this.options.mode,
      network: !this.networkHost
        ? `none for any session (${this.networkProblem}); pkg.install fetches on the host's network unconfined`
        : this.options.network.maxMode === 'none'
          ? "none for any session (WORKER_NETWORK_MAX=none); pkg.install's fetching step reaches its sources only"
          : `${this.networkHost.describe()}; pkg.install's fetching step reaches its sources only`,
      network_modes: `default ${this.options.network.defaultMode}, at most ${this.networkHost ? this.options.network.maxMode : 'none'}`,
      cgroups: this.cgroups
        ? `${this.cgroups.version} (${controllers.join(', ')})${this.cgroups.movedInto ? `; the worker moved into the leaf ${this.cgroups.movedInto} to pass them on` : ''}; moves ${this.cgroups.moves ?? 'slow'}`
        : 'none',
      memory_limit: controllers.includes('memory') ? 'cgroup' : 'RLIMIT_AS',
      cpu_limit: controllers.includes('cpu') ? 'cgroup cpu quota' : 'NOT ENFORCED (no writable cpu cgroup)',
      process_limit: controllers.includes('pids') ? 'cgroup pids' : this.isRoot ? 'RLIMIT_NPROC (per-session uid)' : 'NOT ENFORCED',
      session_forks:
        this.diskImageProblem !== undefined
          ? 'NONE (they copy session disks)'
          : this.copyMethod === 'reflink'
            ? 'reflink clones of the session disk (copy-on-write)'
            : "full copies of the session disk (the data directory's filesystem cannot clone files: XFS with reflink or btrfs can)",
      disk_limit:
        this.diskImageProblem === undefined
          ? 'an ext4 image per session on the data directory, loop-mounted (workspace and environment)'
          : `NOT ENFORCED (${this.diskImageProblem})`,
      package_caches: this.options.cacheDisk?.describe() ?? 'NOT BOUNDED',
      syscall_filter: this.seccomp ? 'seccomp (keyrings, bpf, io_uring, userfaultfd, perf events, namespaces refused)' : `NONE (no filter for ${process.arch})`,
      session_uids: this.uids
        ? `${this.uids.base + 1}-${this.uids.base + this.uids.size - 1} (claimed for this worker; pip's fetching step: ${this.uids.base})`
        : "the worker's own",
    };
  }

  /** Whether sessions can have disk limits here (root, mkfs.ext4, loop devices; probed at start-up). */
  get diskLimits(): boolean {
    return this.diskImageProblem === undefined;
  }

  /**
   * The slow part of making a session's sandbox, done ahead of time for spare sessions: an owner
   * uid, the session's disk (an image of `diskMb`, or a plain directory for 0), the workspace
   * handed to the uid, the environment of `language` (the default one's for spares), and an
   * unlimited cgroup.
   */
  async prepare(dirs: SessionDirectories, diskMb: number, language = this.defaultLanguage): Promise<PreparedSandbox> {
    const slot = this.takeSlot();
    const uids = this.uids;
    // Own uids only where the sandbox hides the host: without it, the code must reach host paths.
    const owner = uids ? { uid: uids.base + slot, gid: uids.base + slot } : undefined;
    const installer = uids ? { uid: uids.base, gid: uids.base } : undefined;
    const prepared: PreparedSandbox = { slot, owner, installer, cgroup: undefined, language, diskMb: 0, diskBaselineBytes: 0, network: undefined };
    try {
      // The disk, then the environment on it; the cgroup and the network beside them. All are
      // settled before a failure discards what was made (a cgroup made beside a failed step
      // is destroyed with the rest).
      const reservation = this.reserveDisk(diskMb);
      const steps = await Promise.allSettled([
        this.makeDisk(prepared, dirs, diskMb, reservation).then(() => this.layOut(dirs, owner, language)),
        this.cgroups?.root
          .child(`spare-${randomBytes(6).toString('hex')}`, { maxProcesses: this.options.maxProcesses })
          .then((group) => (prepared.cgroup = group)),
        (this.options.network.maxMode !== 'none' ? this.networkHost?.prepare() : this.networkHost?.prepareLoopback())?.then(
          (space) => (prepared.network = space),
        ),
      ]);
      const failed = steps.find((step): step is PromiseRejectedResult => step.status === 'rejected');
      if (failed) throw failed.reason;
      return prepared;
    } catch (err) {
      await this.discard(prepared, dirs);
      throw err;
    }
  }

  /** Makes a prepared sandbox the session's: its name, its limits, a disk of the size asked for, its language's environment. */
  async activate(
    prepared: PreparedSandbox,
    sessionId: string,
    dirs: SessionDirectories,
    env: Record<string, string>,
    limits: SessionLimits,
    language: Language,
    policy: SessionNetworkPolicy,
  ): Promise<SessionSandbox> {
    try {
      await this.attachNetwork(prepared, sessionId, policy);
      if (limits.maxDiskMb !== prepared.diskMb) await this.reshapeDisk(prepared, dirs, limits.maxDiskMb, language);
      else if (language !== prepared.language) await this.relayEnvironment(prepared, dirs, language);
      const cgroup = await prepared.cgroup?.rename(sessionId);
      prepared.cgroup = cgroup;
      await cgroup?.setLimits({ memoryBytes: limits.maxMemoryMb * 1024 * 1024, cpuPercent: limits.maxCpuPercent });
      return this.sandboxOf(prepared, dirs, env, limits);
    } catch (err) {
      await this.discard(prepared, dirs);
      throw err;
    }
  }

  /**
   * The sandbox of a session an earlier run of the worker left: its disk mounted again, its uid
   * claimed again (or, when this run has another uid block, a new uid given its files), a cgroup
   * with its limits. Its warm interpreter starts on first use.
   */
  async adopt(
    sessionId: string,
    dirs: SessionDirectories,
    env: Record<string, string>,
    limits: SessionLimits,
    language: Language,
    persisted: { uid: number | undefined; diskUid?: number | undefined; diskBaselineBytes: number; copied?: boolean },
    policy: SessionNetworkPolicy,
  ): Promise<SessionSandbox> {
    const uids = this.uids;
    const wanted = uids && persisted.uid !== undefined ? persisted.uid - uids.base : undefined;
    const slot = wanted !== undefined && wanted > 0 && wanted < uids!.size && !this.usedSlots.has(wanted) ? wanted : this.takeSlot();
    this.usedSlots.add(slot);
    const owner = uids ? { uid: uids.base + slot, gid: uids.base + slot } : undefined;
    const prepared: PreparedSandbox = {
      slot,
      owner,
      installer: uids ? { uid: uids.base, gid: uids.base } : undefined,
      cgroup: undefined,
      language,
      diskMb: limits.maxDiskMb,
      diskBaselineBytes: persisted.diskBaselineBytes,
      network: undefined,
    };
    try {
      // Its network, its disk and its cgroup are independent of each other: made side by side.
      const network = async () => {
        if (policy.mode !== 'none' && !this.networkHost) {
          this.options.logger.warn('session adopted without its network: this worker gives sessions none', {
            session_id: sessionId,
            reason: this.networkProblem,
          });
        } else await this.attachNetwork(prepared, sessionId, policy);
      };
      const disk = async () => {
        if (limits.maxDiskMb > 0) {
          await mountDiskImage(dirs.diskImage, dirs.disk, this.disks);
          // A worker stopped in the middle of a fork's copy leaves the disk frozen: every write would wait.
          if (!persisted.copied) await thawIfLeftFrozen(dirs.disk, dirs.diskImage);
        }
        // What the worker was writing there when it stopped, or when the source was copied (an
        // fs.write's temporary, an install's downloads), is no one's now.
        await removeTree(dirs.scratch);
        await mkdir(dirs.scratch, { mode: 0o755 });
        await this.giveFiles(prepared, dirs, persisted.diskUid ?? persisted.uid, persisted.copied ? undefined : persisted.uid);
      };
      const cgroup = async () => {
        prepared.cgroup = await this.cgroups?.root.child(sessionId, {
          maxProcesses: this.options.maxProcesses,
          memoryBytes: limits.maxMemoryMb * 1024 * 1024,
          cpuPercent: limits.maxCpuPercent,
        });
      };
      const steps = await Promise.allSettled([network(), disk(), cgroup()]);
      const failed = steps.find((step): step is PromiseRejectedResult => step.status === 'rejected');
      if (failed) throw failed.reason;
      return this.sandboxOf(prepared, dirs, env, limits);
    } catch (err) {
      await this.discard(prepared, dirs);
      throw err;
    }
  }

  /** Gives back what a prepared sandbox holds that was never activated (its directories stay). */
  async discard(prepared: PreparedSandbox, dirs: SessionDirectories): Promise<void> {
    this.usedSlots.delete(prepared.slot);
    if (prepared.network) await this.networkHost?.release(prepared.network);
    prepared.network = undefined;
    await prepared.cgroup?.destroy().catch(() => undefined);
    if (prepared.diskMb > 0) await unmountDiskImage(dirs.disk);
  }

  private sandboxOf(prepared: PreparedSandbox, dirs: SessionDirectories, env: Record<string, string>, limits: SessionLimits): SessionSandbox {
    const parts = {
      workspace: dirs.workspace,
      environment: dirs.environment,
      env,
      language: prepared.language,
      owner: prepared.owner,
      installer: prepared.installer,
      cgroup: prepared.cgroup,
      limits,
      disk:
        prepared.diskMb > 0
          ? { mountPoint: dirs.disk, mb: prepared.diskMb, baselineBytes: prepared.diskBaselineBytes, ownerOnDisk: prepared.ownerOnDisk }
          : undefined,
      scratch: dirs.scratch,
      controlDir: join(dirs.root, 'ctl'),
      network:
        prepared.network && !prepared.network.loopbackOnly && this.networkHost
          ? { namespace: prepared.network.path, resolvConf: this.networkHost.resolvConf }
          : ('none' as const),
      loopback: prepared.network?.loopbackOnly ? { namespace: prepared.network.path, ready: prepared.isolated ?? Promise.resolve() } : undefined,
    };
    return new SessionSandbox(this, parts, async () => {
      this.usedSlots.delete(prepared.slot);
      if (prepared.network) await this.networkHost?.release(prepared.network);
    });
  }

  /**
   * The session's policy on its namespace (one made now if the spare had none, or had loopback
   * alone). A session with no network keeps loopback alone, shared by its processes: a spare's
   * namespace loses its way out (its processes wait for that, not the claim), or one is made;
   * where the worker makes no namespaces, each of its processes gets one of its own.
   */
  private async attachNetwork(prepared: PreparedSandbox, sessionId: string, policy: SessionNetworkPolicy): Promise<void> {
    const host = this.networkHost;
    if (policy.mode === 'none') {
      if (!host) return;
      if (!prepared.network) prepared.network = await host.prepareLoopback();
      else if (!prepared.network.loopbackOnly) {
        prepared.isolated = host.isolate(prepared.network);
        prepared.isolated.catch(() => undefined); // awaited by the session's processes
      }
      return;
    }
    if (!host) throw errors.networkUnavailable(policy.mode, this.networkProblem ?? 'it gives sessions no network');
    if (prepared.network?.loopbackOnly) {
      await host.release(prepared.network);
      prepared.network = undefined;
    }
    prepared.network ??= await host.prepare();
    host.attach(prepared.network, sessionId, policy);
  }

  /** The session's disk: an image of `mb` mounted on dirs.disk (nothing for 0). */
  private async makeDisk(prepared: PreparedSandbox, dirs: SessionDirectories, mb: number, reservation = this.reserveDisk(mb)): Promise<void> {
    if (mb <= 0) return;
    try {
      await makeDiskImage(dirs.diskImage, dirs.disk, mb, this.options.dirs.diskTemplates, this.disks);
    } finally {
      reservation?.release();
    }
    prepared.diskMb = mb;
    prepared.diskBaselineBytes = await usedBytes(dirs.disk);
  }

  /**
   * The data disk's room for a session disk of `mb`, held until the image exists: from then on it
   * counts by itself (storage/diskBudget.ts). Throws (nothing made) when there is none.
   */
  private reserveDisk(mb: number): Reservation | undefined {
    if (mb <= 0) return undefined;
    if (this.diskImageProblem !== undefined) throw new Error(`this worker cannot give sessions a disk limit (${this.diskImageProblem})`);
    return this.options.diskBudget?.reserve(imageBytes(mb), `a session disk of ${mb} MB`);
  }

  /** A spare made with another disk size: its disk made again at the size asked for. */
  private async reshapeDisk(prepared: PreparedSandbox, dirs: SessionDirectories, mb: number, language: Language): Promise<void> {
    if (prepared.diskMb > 0) {
      await unmountDiskImage(dirs.disk);
      await rm(dirs.diskImage, { force: true });
      prepared.diskMb = 0;
    } else {
      for (const dir of [dirs.workspace, dirs.environment, dirs.scratch]) await removeTree(dir);
    }
    await this.makeDisk(prepared, dirs, mb);
    await this.layOut(dirs, prepared.owner, language);
    prepared.language = language;
  }

  /** A spare made for another language: its environment and workspace made again for this one (the rest fits any). */
  private async relayEnvironment(prepared: PreparedSandbox, dirs: SessionDirectories, language: Language): Promise<void> {
    await Promise.all([removeTree(dirs.environment), removeTree(dirs.workspace)]);
    await mkdir(dirs.workspace);
    await Promise.all([this.makeWorkspace(dirs, prepared.owner, language), this.makeEnvironment(dirs, prepared.owner, language)]);
    prepared.language = language;
  }

  /** workspace/ (the session's), .scratch/ and the language's environment (the session's) on its disk. */
  private async layOut(dirs: SessionDirectories, owner: Owner | undefined, language: Language): Promise<void> {
    await Promise.all([mkdir(dirs.workspace), mkdir(dirs.scratch, { mode: 0o755 })]);
    await Promise.all([this.makeWorkspace(dirs, owner, language), this.makeEnvironment(dirs, owner, language)]);
  }

  /** The workspace (made, empty) with what the language starts one with, all the session's. */
  private async makeWorkspace(dirs: SessionDirectories, owner: Owner | undefined, language: Language): Promise<void> {
    await language.seedWorkspace?.(dirs.workspace);
    if (owner) await chownTree(dirs.workspace, owner.uid, owner.gid);
  }

  private async makeEnvironment(dirs: SessionDirectories, owner: Owner | undefined, language: Language): Promise<void> {
    await language.createEnvironment(dirs.environment);
    if (owner) await chownTree(dirs.environment, owner.uid, owner.gid);
  }

  /**
   * Copies of a session's disk (mounted at `source`) for its forks, at one instant
   * (confine/diskFork.ts), each reserved against the data disk first: a clone takes no space
   * until written, then may take its whole size. Clones are marked so the budget counts them so.
   */
  async copyDisk(source: SessionDirectories, diskMb: number, targets: SessionDirectories[]): Promise<{ pausedMs: number }> {
    if (this.diskImageProblem !== undefined || diskMb <= 0) throw new Error('the session has no disk of its own to copy');
    const reservations: Reservation[] = [];
    try {
      for (const _ of targets) {
        const held = this.options.diskBudget?.reserve(imageBytes(diskMb), `a fork's disk of ${diskMb} MB`);
        if (held) reservations.push(held);
      }
      const images = targets.map((t) => t.diskImage);
      if (this.copyMethod === 'copy') return await copyFrozen(source.disk, source.diskImage, images);
      const cloned = await this.disks.clone(source.disk, source.diskImage, images);
      await Promise.all(images.map((image) => markShared(image)));
      return cloned;
    } finally {
      for (const held of reservations) held.release();
    }
  }

  /**
   * An adopted or forked session's files made its owner's, where they belong on disk to another
   * uid (`onDisk`): an idmapped mount of its disk where the kernel has them (no file touched),
   * else a chown of every file. A disk a worker killed while it was mounted is still mounted,
   * idmapped for the uid the session had then (`lastOwner`): kept when that is its uid now,
   * else mounted again.
   */
  private async giveFiles(prepared: PreparedSandbox, dirs: SessionDirectories, onDisk: number | undefined, lastOwner: number | undefined): Promise<void> {
    const owner = prepared.owner;
    if (!owner || onDisk === undefined) return;
    if (prepared.diskMb > 0 && (await isIdmappedMount(dirs.disk))) {
      if (lastOwner === owner.uid) {
        prepared.ownerOnDisk = onDisk;
        return;
      }
      // Idmapped for the uid the killed worker gave, and this run has another uid block: the
      // idmapped mount goes and the image is mounted again (the filesystem still live, if
      // anything holds it: diskHelper.py's held_loop), to be idmapped for the new uid below.
      // Moving the session aside instead lost it for its client on any busy host.
      await unmountDiskImage(dirs.disk);
      await mountDiskImage(dirs.diskImage, dirs.disk, this.disks);
    }
    if (owner.uid === onDisk) return;
    if (lastOwner !== undefined && lastOwner !== owner.uid)
      this.options.logger.info('session files given a new uid (this run has another uid block)', { session_id: basename(dirs.root), uid: owner.uid });
    if (prepared.diskMb > 0 && this.idmaps !== false) {
      try {
        await this.disks.idmap(dirs.disk, onDisk, owner.uid, [0, ...(prepared.installer ? [prepared.installer.uid] : [])]);
        prepared.ownerOnDisk = onDisk;
        this.idmaps = true;
        return;
      } catch (err) {
        // Having worked here, it failing is this session's fault, not the kernel's.
        if (this.idmaps === true) throw err;
        this.options.logger.warn('idmapped mounts are not available: session files are given new uids by chown', { reason: messageOf(err) });
        this.idmaps = false;
      }
    }
    await runHostTool('chown', ['-R', '-P', '-h', `${owner.uid}:${owner.gid}`, '--', dirs.workspace, dirs.environment]);
  }

  /** The languages the worker offers; the first is the default. */
  get languages(): readonly Language[] {
    return this.options.languages;
  }

  private get defaultLanguage(): Language {
    const [first] = this.options.languages;
    if (!first) throw new SandboxUnavailableError('the worker offers no session language');
    return first;
  }

  /** The language named `name`, when the worker offers it. */
  language(name: string): Language | undefined {
    return this.options.languages.find((l) => l.name === name);
  }

  /** Removes the worker's cgroup subtree and gives its uids back (at shutdown, after every session is gone). */
  async close(): Promise<void> {
    await this.checks.settled();
    await this.cgroups?.root.destroy().catch(() => undefined);
    await this.networkHost?.close();
    this.disks.close();
    this.uids?.lock.release();
  }

  /** prepare() then activate(): a session's sandbox made on the spot. */
  async createSession(
    sessionId: string,
    dirs: SessionDirectories,
    env: Record<string, string>,
    limits: SessionLimits,
    language: Language,
    policy: SessionNetworkPolicy,
  ): Promise<SessionSandbox> {
    return this.activate(await this.prepare(dirs, limits.maxDiskMb, language), sessionId, dirs, env, limits, language, policy);
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

  /** Starts the self-checks of the languages but the default (once the worker serves: host/selfChecks.ts). */
  checkOtherLanguages(): void {
    this.checks.checkOthers();
  }

  /** Resolves once `language`'s self-check passed (the default's passed at start-up); throws its failure. */
  async languageReady(language: Language): Promise<void> {
    await this.checks.ready(language);
  }
}

/**
 * What the sandbox needs of the host, independent of each other: made at once, while the
 * languages are still being resolved. On any failure what was made is given back and the first
 * failure (in this order) is thrown.
 */
async function hostResources(start: SandboxHostStart, resolving: Promise<readonly Language[]>, uids: UidRange | undefined, isRoot: boolean, disks: DiskHelper) {
  const steps = await Promise.allSettled([
    resolving,
    isRoot ? cgroupsWithMoves(start) : Promise.resolve(undefined),
    isRoot ? probeDiskImages(start.dirs.scratch, disks) : Promise.resolve('it needs a worker running as root'),
    trustedCas(start),
    startNetworks(start, uids),
    probeCopyMethod(start.dirs.scratch),
  ] as const);
  const [languages, cgroups, diskImageProblem, caBundle, network, copyMethod] = steps;
  if (
    languages.status === 'rejected' ||
    cgroups.status === 'rejected' ||
    diskImageProblem.status === 'rejected' ||
    caBundle.status === 'rejected' ||
    network.status === 'rejected' ||
    copyMethod.status === 'rejected'
  ) {
    if (network.status === 'fulfilled') await network.value.host?.close();
    throw steps.find((step): step is PromiseRejectedResult => step.status === 'rejected')!.reason;
  }
  return {
    languages: languages.value,
    cgroups: cgroups.value,
    diskImageProblem: diskImageProblem.value,
    caBundle: caBundle.value,
    network: network.value,
    copyMethod: copyMethod.value,
  };
}

/** The worker's cgroups, moves into them made quick first where the host lets the worker (favorDynmods.ts). */
async function cgroupsWithMoves(start: SandboxHostStart): Promise<CgroupSupport | undefined> {
  const outcome: DynmodsOutcome =
    start.quickCgroupMoves === false
      ? { quick: false, why: 'WORKER_QUICK_CGROUP_MOVES=false' }
      : await favorDynamicModifications(join(UID_LOCK_DIR, 'cgroup-dynmods'), (args) => runHostTool('mount', args));
  const cgroups = await setUpCgroups(outcome.quick ? 'quick' : 'slow');
  return cgroups && { ...cgroups, moves: outcome.quick ? `quick (${outcome.how})` : `each waits for an RCU grace period (${outcome.why})` };
}

/**
 * The sessions' networks and pkg.install's narrow path to its sources, where the worker can
 * make them (root, bubblewrap, nftables). Where it cannot, a default of none leaves the worker
 * serving sessions without networks (the log says why); a wider default stops it.
 */
async function startNetworks(options: SandboxHostStart, uids: UidRange | undefined): Promise<{ host?: NetworkHost; problem?: string }> {
  const settings = options.network;
  const problem = options.mode !== 'bwrap' ? 'WORKER_SANDBOX=none runs code on the host' : uids === undefined ? 'it needs a worker running as root' : undefined;
  try {
    if (problem) throw new Error(problem);
    const host = await NetworkHost.start({
      block: Math.floor(uids!.base / 100_000),
      dnsServers: settings.dnsServers,
      runDirectory: options.dirs.network,
      logger: options.logger,
      onRefused: (sessionId, kind) => metrics.networkRefused.inc({ session_id: sessionId, kind }),
      installer: { uid: uids!.base, endpoints: installerEndpoints(settings.installerSources) },
    });
    return { host };
  } catch (err) {
    if (settings.defaultMode !== 'none')
      throw new SandboxUnavailableError(`WORKER_NETWORK_DEFAULT is ${settings.defaultMode}, but sessions cannot have networks here: ${messageOf(err)}`);
    options.logger.warn('sessions get no network on this worker', { reason: messageOf(err) });
    return { problem: messageOf(err) };
  }
}

/** WORKER_CA_BUNDLE's bundles, written where sandboxes get them (a bad file stops start-up, saying why). */
async function trustedCas(options: SandboxHostStart): Promise<CaBundle | undefined> {
  if (!options.caBundle) return undefined;
  await mkdir(options.dirs.network, { recursive: true });
  return prepareCaBundle(options.caBundle, options.dirs.network).catch((err: unknown) => {
    throw err instanceof CaBundleError ? new SandboxUnavailableError(err.message) : err;
  });
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await chown(dir, uid, gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path, uid, gid);
    else if (!entry.isSymbolicLink()) await chown(path, uid, gid);
  }
}
