import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { deferred } from '../../deferred.js';
import { errors } from '../../errors.js';
import { smallestPositive } from '../../limits.js';
import type { Owner } from '../../storage/owner.js';
import { destroyWhenItCan, type Cgroup } from '../confine/cgroups.js';
import { filesUsed, syncDiskImage, unmountDiskImage, usedBytes } from '../confine/diskImage.js';
import { sandboxSeccompProgram } from '../confine/seccomp.js';
import { SYSTEM_PATH, type CodeCommand, type InstallResult, type Language, type LanguageSandbox, type RunAs } from '../languages/language.js';
import { confine, type Mount, type NetworkAccess } from '../confine/launcher.js';
import type { KilledBy, ProcessResult, RunOptions, RunningProcess, SandboxedResult, SessionLimits, TaskLimits } from '../process/processSpec.js';
import { measureProcessTrees, TASK_MARKER_VARIABLE, type ProcessUsage } from '../process/processTree.js';
import { newTaskMarker } from '../process/runProcess.js';
import { PortRelay } from './portRelay.js';
import { PTY_HELPER_SOURCE } from './ptyHelper.js';
import { Duplex } from 'node:stream';
import type { SandboxContext } from './sandboxContext.js';
import { BackgroundProcesses, type BackgroundInfo } from './backgroundProcesses.js';
import { userCache, userCacheKey } from '../caches/sharedCache.js';
import { installWithCacheRoom } from '../caches/cacheDisk.js';
import { WarmUnavailableError, type WarmProgram } from '../warm/warmInterpreter.js';
import { HOST_STARTERS, type SessionStarters, type SessionTaskGroups, type WarmProcess } from './sessionStarters.js';

export interface SessionSandboxParts {
  workspace: string;
  /** The session's environment, laid out by its language. */
  environment: string;
  language: Language;
  env: Record<string, string>;
  /** Host uid of the session's code; undefined when the worker is not root. */
  owner: Owner | undefined;
  /** Host uid the fetching step of pkg.install runs as (it owns the shared pip cache). */
  installer: Owner | undefined;
  cgroup: Cgroup | undefined;
  limits: SessionLimits;
  /** The session's own disk (a mounted image of diskMb), when it has a disk limit. */
  /** `ownerOnDisk`: whose the files are on the disk itself, when an idmapped mount shows them as the owner's (confine/idmappedMount.ts). */
  disk: { mountPoint: string; mb: number; baselineBytes: number; ownerOnDisk?: number | undefined } | undefined;
  /** Where pkg.install's steps keep their scratch directories (on the session's disk). */
  scratch: string;
  /** Where the warm interpreter's socket lives (host path). */
  controlDir: string;
  /** The session's own network: none, or its namespace (its policy lives with the worker's egress gateway). */
  network: Exclude<NetworkAccess, 'host'>;
  /**
   * With no network: the namespace with loopback alone its processes share, once `ready`;
   * undefined where the worker makes none (each process then gets one of its own).
   */
  loopback?: { namespace: string; ready: Promise<void> } | undefined;
}

/** Where things are inside an isolating sandbox. */
const INSIDE = { workspace: '/workspace', env: '/env', control: '/run/codegen' };
/** Open files per sandboxed process: far below the worker's own, so no session can use up the host's. */
const SANDBOX_OPEN_FILES = 4096;
/** A warm process that failed to start is not tried again for this long (its calls run cold). */
const WARM_RETRY_MS = 60_000;
const PORTS_NEED = 'they need a worker running as root, which gives each session a network namespace of its own to reach';
/** Background processes where the worker's settings give none (tests' sandboxes). */
const DEFAULT_BACKGROUND = { maxRunning: 8, outputBytes: 256 * 1024 };
/** Unix socket paths longer than this do not fit in sockaddr_un. */
const MAX_SOCKET_PATH = 100;

/**
 * Where one session's processes run, and the only way the domain starts any: its workspace as
 * the working directory, its language's environment, its own uid, cgroup, limits and network,
 * and, with bubblewrap, nothing else of the host. A call is forked from the session's warm
 * process where it has one, else started cold: a fresh process in a fresh sandbox.
 */
export class SessionSandbox {
  private readonly live = new Set<RunningProcess>();
  /** Each call's own cgroup (under the session's), bounded per session. */
  private readonly taskGroups: SessionTaskGroups | undefined;
  private lastCpuSample = { at: process.hrtime.bigint(), ns: 0 };
  private warm: { startedAt: number; promise: Promise<WarmProcess | undefined> } | undefined;
  private installQueue: Promise<void> = Promise.resolve();
  private socket: { host: string; inside: string } | undefined;
  private codeCommand: CodeCommand | undefined;
  private backgroundProcesses: BackgroundProcesses | undefined;
  private processesGroup: Promise<Cgroup | undefined> | undefined;
  private portRelay: PortRelay | undefined;

  constructor(
    private readonly host: SandboxContext,
    private readonly parts: SessionSandboxParts,
    private readonly release: () => Promise<void>,
    private readonly starters: SessionStarters = HOST_STARTERS,
  ) {
    this.taskGroups = parts.cgroup && starters.taskGroups(parts.cgroup);
  }

  get workspace(): string {
    return this.parts.workspace;
  }

  /**
   * The worker's scratch directory on the session's disk (host path): beside the workspace on
   * the same filesystem, never in the sandbox. Emptied when the session is adopted or forked.
   */
  get scratch(): string {
    return this.parts.scratch;
  }

  /** The session's environment (host path): what its language installs into. */
  get environment(): string {
    return this.parts.environment;
  }

  /** Who new workspace files must belong to, so the session's code can change them. */
  get owner(): Owner | undefined {
    return this.parts.owner;
  }

  private get isolate(): boolean {
    return this.host.options.mode === 'bwrap';
  }

  /** How the session's language runs code here (the same for every call: computed once). */
  private get languageRun(): CodeCommand {
    this.codeCommand ??= this.parts.language.runCommand(this.inside.env, this.isolate);
    return this.codeCommand;
  }

  /** The session's language. */
  get language(): Language {
    return this.parts.language;
  }

  /** Runs `code` (given on stdin) in a fresh interpreter of the session's language, cwd = workspace. */
  async runCode(code: string, options: RunOptions, taskLimits: TaskLimits): Promise<SandboxedResult> {
    await this.parts.loopback?.ready;
    const { command, env } = this.languageRun;
    const allEnv = this.codeEnv(env);
    // A warm interpreter of the language runs the code itself; a plain zygote execs the command, the code on its stdin.
    const program = (runsCode: boolean): WarmProgram =>
      runsCode ? { code } : { exec: { argv: command, cwd: this.inside.workspace, env: allEnv, stdin: code } };
    const warm = await this.runWarm(program, options, taskLimits);
    if (warm) return warm;
    // Only a cold start needs the interpreter's file: a running warm interpreter has it loaded
    // (and, without it, does not start: the call comes here).
    await this.parts.language.checkEnvironment(this.parts.environment);
    return this.run(command, this.inside.workspace, allEnv, this.codeMounts(), this.codeNetwork, this.parts.owner, taskLimits, {
      ...options,
      stdin: code,
    });
  }

  /**
   * Runs `command` with /bin/sh -c in the workspace (or `cwd`, a directory in it given as its
   * path segments): the session's language first on PATH, then every toolchain the worker has.
   * Forked from the warm interpreter when the session has one (a shell costs no sandbox start).
   */
  async runShell(command: string, cwd: string[], options: RunOptions, taskLimits: TaskLimits): Promise<SandboxedResult> {
    const { argv, dir, env } = this.shell(command, cwd);
    await this.parts.loopback?.ready;
    const warm = await this.runWarm(() => ({ exec: { argv, cwd: dir, env } }), options, taskLimits);
    if (warm) return warm;
    return this.run(argv, dir, env, this.codeMounts(), this.codeNetwork, this.parts.owner, taskLimits, { ...options, stdin: '' });
  }

  /** `command` for /bin/sh -c in `cwd` (path segments in the workspace), with run.shell's PATH. */
  private shell(command: string, cwd: string[]): { argv: string[]; dir: string; env: Record<string, string> } {
    const run = this.languageRun;
    const path = [...(run.env.PATH ?? SYSTEM_PATH).split(':'), ...this.languages.flatMap((l) => l.toolchainPath)];
    const env = this.codeEnv({ ...run.env, PATH: [...new Set(path)].join(':') });
    return { argv: ['/bin/sh', '-c', command], dir: [this.inside.workspace, ...cwd].join('/'), env };
  }

  /**
   * Starts `command` as run.shell would, as a background process of the session's: in a sandbox
   * of its own, in a cgroup below the session's, running after the task that started it.
   */
  async startBackground(number: number, command: string, cwd: string[], terminal?: { rows: number; cols: number }): Promise<BackgroundInfo> {
    const shell = this.shell(command, cwd);
    const background = this.background;
    const python = this.hostPython;
    if (terminal && !python) throw errors.backgroundUnavailable('a terminal needs the Python the worker runs its helpers with');
    // On a terminal: ptyHelper.py (the host's Python, as the plain zygote runs) holds it and runs the shell on it.
    const argv = terminal ? [python!, '-I', '-S', '-c', PTY_HELPER_SOURCE, String(terminal.rows), String(terminal.cols), ...shell.argv] : shell.argv;
    const env = terminal ? { ...shell.env, TERM: shell.env.TERM ?? 'xterm-256color' } : shell.env;
    const dir = shell.dir;
    await this.parts.loopback?.ready;
    const launch = (group: Cgroup) => ({
      ...confine(argv, dir, env, {
        tools: this.host.tools,
        isolate: this.isolate,
        network: this.codeNetwork,
        mounts: this.codeMounts(),
        owner: this.parts.owner,
        cgroup: group,
        rlimits: { openFiles: SANDBOX_OPEN_FILES },
        seccomp: this.host.seccomp,
      }),
      control: terminal !== undefined,
    });
    return background.start(number, command, launch, terminal !== undefined);
  }

  /** The host's Python the worker runs its helpers with (the plain zygote's): visible in every session's sandbox. */
  private get hostPython(): string | undefined {
    return this.languages.map((l) => l.zygoteCommand?.('')[0]).find((p) => p !== undefined);
  }

  /** The session's background processes (FAILED_PRECONDITION where the session has no cgroup to count them in). */
  get background(): BackgroundProcesses {
    const group = this.parts.cgroup;
    const controllers = this.host.cgroups?.controllers ?? [];
    if (!group || !controllers.includes('memory') || !controllers.includes('pids'))
      throw errors.backgroundUnavailable("they need cgroups with the memory and pids controllers, to count them against the session's limits");
    this.backgroundProcesses ??= new BackgroundProcesses(this.host.options.background ?? DEFAULT_BACKGROUND, group, this.parts.owner?.uid);
    return this.backgroundProcesses;
  }

  /**
   * A connection to `port` on the loopback of the session's network namespace (a port URL's),
   * through the session's port relay (portRelay.ts). FAILED_PRECONDITION where the session's
   * processes have no namespace the worker can join (a worker not running as root).
   */
  async connectPort(port: number): Promise<Duplex> {
    const network = this.codeNetwork;
    const python = this.hostPython;
    if (typeof network !== 'object' || !this.parts.owner || !python) throw errors.portsUnavailable(PORTS_NEED);
    await this.parts.loopback?.ready;
    const ownGroup = await this.ownProcessesGroup();
    this.portRelay ??= new PortRelay(
      { nsenter: this.host.tools.nsenter, setpriv: this.host.tools.setpriv, python },
      network.namespace,
      this.parts.owner,
      ownGroup,
    );
    return this.portRelay.connect(port);
  }

  /** Whether connectPort can reach the session's ports (FAILED_PRECONDITION saying why, when not). */
  canConnectPorts(): void {
    if (typeof this.codeNetwork !== 'object' || !this.parts.owner) throw errors.portsUnavailable(PORTS_NEED);
  }

  /** Where the session's code runs: its own network, or with none the loopback its processes share. */
  private get codeNetwork(): Exclude<NetworkAccess, 'host'> {
    const loopback = this.parts.loopback;
    return this.parts.network === 'none' && loopback ? { namespace: loopback.namespace } : this.parts.network;
  }

  /** The session's language first, then every other the worker offers (their toolchains are on a shell's PATH). */
  private get languages(): Language[] {
    return [this.parts.language, ...this.host.options.languages.filter((l) => l !== this.parts.language)];
  }

  /** Where the workspace and the environment are as the session's processes see them. */
  private get inside(): { workspace: string; env: string } {
    return this.isolate ? { workspace: INSIDE.workspace, env: INSIDE.env } : { workspace: this.parts.workspace, env: this.parts.environment };
  }

  /** A process's environment: the basics, then what its language adds, then the session's own `env`. */
  private codeEnv(languageEnv: Record<string, string>): Record<string, string> {
    const home = this.isolate ? '/tmp' : this.inside.workspace;
    return { HOME: home, USER: 'sandbox', LANG: 'C.UTF-8', ...languageEnv, ...this.trust(this.parts.network !== 'none').env, ...this.parts.env };
  }

  /** WORKER_CA_BUNDLE's CAs for a process with a network (its mounts and variables); nothing without one. */
  private trust(networked: boolean): { mounts: Mount[]; env: Record<string, string> } {
    const bundle = this.host.caBundle;
    return bundle && networked && this.isolate ? bundle : { mounts: [], env: {} };
  }

  /**
   * What the session's code sees: the languages' installations, its workspace, its environment
   * (read-only, but for what its language lets code write: a build cache). Those directories'
   * parent is the environment, which the session's processes cannot change (only pkg.install
   * writes it, running no session code where a language has such paths), so none can swap them
   * for a link before the mount is made.
   */
  private codeMounts(): Mount[] {
    const env = this.parts.environment;
    return [
      ...this.languages.flatMap((l) => l.systemMounts),
      { host: this.parts.workspace, inside: INSIDE.workspace, writable: true },
      { host: env, inside: INSIDE.env, writable: false },
      ...this.parts.language.writablePaths.map((path) => ({ host: join(env, path), inside: `${INSIDE.env}/${path}`, writable: true })),
      ...(this.languageRun.mounts ?? []),
      ...this.trust(this.parts.network !== 'none').mounts,
    ];
  }

  /**
   * The session's warm process: its language's warm interpreter (which runs code itself), or
   * else a plain zygote another language offers (which only forks and execs).
   */
  private warmLaunch(): { command: string[]; runsCode: boolean } | undefined {
    if (!this.canWarm) return undefined;
    const socket = this.warmSocket().inside;
    const own = this.parts.language.warmCommand(this.inside.env, socket);
    if (own) return { command: own, runsCode: true };
    const zygote = this.languages.map((l) => l.zygoteCommand?.(socket)).find((command) => command !== undefined);
    return zygote ? { command: zygote, runsCode: false } : undefined;
  }

  /** `program` forked from the session's warm process; undefined when there is none (run it cold). */
  private async runWarm(program: (runsCode: boolean) => WarmProgram, options: RunOptions, taskLimits: TaskLimits): Promise<SandboxedResult | undefined> {
    const launch = this.warmLaunch();
    if (!launch) return undefined;
    const warm = await this.warmInterpreter(launch.command, this.inside.workspace, this.codeEnv(this.languageRun.env), this.codeMounts());
    if (!warm) return undefined;
    try {
      return await this.inTaskGroup(
        taskLimits,
        options,
        (group, opts) => warm.run(program(launch.runsCode), opts, group!),
        () => warm.claimAhead(),
      );
    } catch (err) {
      if (!(err instanceof WarmUnavailableError)) throw err;
      return undefined;
    }
  }

  /** Warm calls need task cgroups: they are how a forked child is limited, measured and killed. */
  private get canWarm(): boolean {
    const controllers = this.host.cgroups?.controllers ?? [];
    return this.host.options.warmInterpreter && this.parts.cgroup !== undefined && controllers.includes('memory') && controllers.includes('pids');
  }

  /**
   * The session's warm interpreter, started on first use and again if it died; concurrent first
   * calls share one start. Undefined (run cold) when it cannot start, retried after WARM_RETRY_MS.
   */
  private async warmInterpreter(launch: string[], cwd: string, env: Record<string, string>, mounts: Mount[]): Promise<WarmProcess | undefined> {
    const current = this.warm;
    if (current) {
      const warm = await current.promise;
      if (warm?.alive) return warm;
      if (warm === undefined && this.starters.now() - current.startedAt < WARM_RETRY_MS) return undefined;
      if (this.warm !== current) return this.warmInterpreter(launch, cwd, env, mounts);
    }
    const attempt = {
      startedAt: this.starters.now(),
      promise: this.startWarm(launch, cwd, env, mounts).catch((err: Error) => {
        this.host.options.logger.warn('warm interpreter unavailable; running cold', { error: err.message });
        return undefined;
      }),
    };
    this.warm = attempt;
    return attempt.promise;
  }

  /** Where the warm interpreter's socket is: in the session's ctl/, or (a path too long) in /tmp. */
  private warmSocket(): { host: string; inside: string } {
    if (!this.socket) {
      const preferred = join(this.parts.controlDir, 'io.sock');
      const host = preferred.length <= MAX_SOCKET_PATH ? preferred : join(tmpdir(), `codegen-${randomBytes(6).toString('hex')}`, 'io.sock');
      this.socket = { host, inside: this.isolate ? `${INSIDE.control}/io.sock` : host };
    }
    return this.socket;
  }

  /**
   * Where the session's own processes (the warm interpreter, the port relay) join its cgroup: on
   * v2 a leaf, `main`, of the session's group, as a group passing controllers on to its task
   * groups may hold no process itself (the kernel's no-internal-processes rule: EBUSY); on v1
   * the session's group.
   */
  private ownProcessesGroup(): Promise<Cgroup | undefined> {
    const session = this.parts.cgroup;
    this.processesGroup ??= session && this.host.cgroups?.version === 'v2' ? session.child('main', {}) : Promise.resolve(session);
    return this.processesGroup;
  }

  private async startWarm(command: string[], cwd: string, env: Record<string, string>, mounts: Mount[]): Promise<WarmProcess> {
    const socket = this.warmSocket();
    await this.parts.loopback?.ready;
    const ownGroup = await this.ownProcessesGroup();
    const launch = confine(command, cwd, env, {
      tools: this.host.tools,
      isolate: this.isolate,
      network: this.codeNetwork,
      mounts: [...mounts, { host: dirname(socket.host), inside: INSIDE.control, writable: false }],
      owner: this.parts.owner,
      cgroup: ownGroup,
      rlimits: { openFiles: SANDBOX_OPEN_FILES },
      seccomp: this.host.seccomp,
    });
    return this.starters.warm(socket.host, this.parts.owner, launch, this.host.options.logger, this.taskGroups);
  }

  private async stopWarm(): Promise<void> {
    const warm = this.warm;
    this.warm = undefined;
    await (await warm?.promise)?.close();
  }

  /** Installs packages into the session's environment with its language's installer, one install at a time. */
  async install(requirements: string[], options: RunOptions, userId: string): Promise<InstallResult> {
    // Two installers writing the same environment would corrupt it.
    const previous = this.installQueue;
    const done = deferred();
    this.installQueue = done.promise;
    try {
      await previous;
      options.signal.throwIfAborted();
      const language = this.parts.language;
      await language.checkEnvironment(this.parts.environment);
      const caches = this.host.options.cacheDisk;
      const cachePaths = caches ? [`${language.installerCacheInside}/`, `${caches.mountPoint}/`] : [];
      const install = () => language.install(this.languageSandbox(userId), requirements, options);
      return await installWithCacheRoom(caches, install, { signal: options.signal, cachePaths });
    } finally {
      // New packages may bring start-up hooks (.pth files), which only an interpreter start reads.
      await this.stopWarm();
      done.resolve();
    }
  }

  /** Paths in the environment tied to this host's installation: left out of checkpoints. */
  get machineSpecific(): readonly string[] {
    return this.parts.language.machineSpecific;
  }

  /** The packages in the session's environment, as its language names them (for checkpoint records). */
  installedPackages(): Promise<string[]> {
    return this.parts.language.installedPackages({ workspace: this.parts.workspace, environment: this.parts.environment });
  }

  /** What the session's language may do in its sandbox: confined runs as the session or the installer. */
  private languageSandbox(userId: string): LanguageSandbox {
    const as = (who: RunAs) => (who === 'installer' ? this.parts.installer : this.parts.owner);
    const cacheKey = this.host.options.cacheScope === 'user' ? userCacheKey(userId) : undefined;
    return {
      isolate: this.isolate,
      cacheKey,
      installerCache: async (base) => (cacheKey === undefined ? base : userCache(base, cacheKey, this.parts.installer)),
      allowNetwork: this.parts.network !== 'none',
      workspace: { host: this.parts.workspace, inside: INSIDE.workspace },
      environment: { host: this.parts.environment, inside: INSIDE.env },
      run: (step, options) =>
        this.run(
          step.command,
          step.cwd,
          { ...step.env, ...this.trust(step.network).env },
          [...step.mounts, ...this.trust(step.network).mounts],
          // The installer's fetching step reaches the index from the host; the session's own steps get the session's network.
          !step.network ? 'none' : step.as === 'installer' ? 'host' : this.parts.network,
          as(step.as),
          {},
          {
            ...options,
            seccomp: step.denyProcesses ? sandboxSeccompProgram({ denyProcesses: true }) : this.host.seccomp,
          },
        ),
      scratchDirectory: (prefix, who) => this.scratchDirectory(prefix, as(who)),
    };
  }

  /** A fresh directory in the data directory, handed to `owner` (removed by the caller). */
  private async scratchDirectory(prefix: string, owner: Owner | undefined): Promise<string> {
    const dir = await mkdtemp(join(this.parts.scratch, prefix)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOSPC' || err.code === 'EDQUOT') throw errors.tooLarge("pkg.install: no space left on the session's disk (its max_disk_mb is full)");
      if (err.code === 'EROFS') throw errors.readOnlyDisk("pkg.install's scratch directory");
      throw err;
    });
    if (owner) await chown(dir, owner.uid, owner.gid);
    await chmod(dir, 0o755); // what one step writes, the next (another uid) reads
    return dir;
  }

  /**
   * Memory and CPU of the session's processes running now: from the session's cgroup (CPU as
   * the share used since the previous reading), else from /proc.
   */
  async usage(): Promise<ProcessUsage> {
    const group = this.parts.cgroup;
    if (!group) return measureProcessTrees([...this.live].map((p) => p.pid));
    const [memoryBytes, cpuNs] = await Promise.all([group.memoryBytes(), group.cpuUsageNs()]);
    const now = process.hrtime.bigint();
    const elapsedNs = Number(now - this.lastCpuSample.at);
    const cpuPercent = elapsedNs > 0 ? (100 * Math.max(cpuNs - this.lastCpuSample.ns, 0)) / elapsedNs : 0;
    this.lastCpuSample = { at: now, ns: cpuNs };
    return { memoryBytes: this.live.size > 0 ? memoryBytes : 0, cpuPercent };
  }

  /** The session's disk limit in MB (0: none). */
  get diskMb(): number {
    return this.parts.disk?.mb ?? 0;
  }

  /** The uid the session's files have on its disk itself (its own, unless its disk is idmapped: a fork's, an adopted one's). */
  get diskUid(): number | undefined {
    return this.parts.disk?.ownerOnDisk ?? this.parts.owner?.uid;
  }

  /** What the session's empty filesystem uses itself (not the session's bytes). */
  get diskBaselineBytes(): number {
    return this.parts.disk?.baselineBytes ?? 0;
  }

  /** Bytes the session holds on its own disk (no walk: its filesystem says); undefined without one. */
  async diskUsedBytes(): Promise<number | undefined> {
    if (!this.parts.disk) return undefined;
    return Math.max((await usedBytes(this.parts.disk.mountPoint)) - this.parts.disk.baselineBytes, 0);
  }

  /** Files and directories on the session's own disk (its filesystem says); undefined without one. */
  async diskFilesUsed(): Promise<number | undefined> {
    return this.parts.disk && filesUsed(this.parts.disk.mountPoint);
  }

  /**
   * Ends every process of the session and gives back what the sandbox holds (cgroup, mount,
   * uid). `kept`: its files stay for the next start to adopt, so its disk is synced first.
   */
  async dispose(kept = false): Promise<void> {
    await this.backgroundProcesses?.dispose();
    await this.portRelay?.dispose();
    await this.taskGroups?.dispose();
    await this.stopWarm();
    const group = this.parts.cgroup;
    // A process in uninterruptible sleep keeps the group a while: it is removed once it can be.
    await group?.destroy().catch(() => destroyWhenItCan(group));
    if (this.parts.disk) {
      if (kept)
        await syncDiskImage(this.parts.disk.mountPoint).catch((err: Error) =>
          this.host.options.logger.warn('could not sync the session disk before unmounting it', { mount: this.parts.disk?.mountPoint, error: err.message }),
        );
      await unmountDiskImage(this.parts.disk.mountPoint);
    }
    await this.release();
  }

  /** A cold start: a new process (and, isolating, a new sandbox) for this one call. */
  private run(
    command: string[],
    cwd: string,
    env: Record<string, string>,
    mounts: Mount[],
    network: NetworkAccess,
    owner: Owner | undefined,
    taskLimits: TaskLimits,
    options: RunOptions & { stdin?: string; seccomp?: Buffer | undefined },
  ): Promise<SandboxedResult> {
    const controllers = this.host.cgroups?.controllers ?? [];
    return this.inTaskGroup(taskLimits, options, (group, opts, memoryMb) => {
      const marker = newTaskMarker();
      const spec = confine(
        command,
        cwd,
        { ...env, [TASK_MARKER_VARIABLE]: marker },
        {
          tools: this.host.tools,
          isolate: this.isolate,
          network,
          mounts,
          owner,
          cgroup: group,
          rlimits: {
            addressSpaceBytes: memoryMb && !controllers.includes('memory') ? memoryMb * 1024 * 1024 : undefined,
            processes: !controllers.includes('pids') && owner ? this.host.options.maxProcesses : undefined,
            openFiles: SANDBOX_OPEN_FILES,
          },
          seccomp: 'seccomp' in options ? options.seccomp : this.host.seccomp,
        },
      );
      return this.starters.cold({ ...spec, marker, stdin: options.stdin }, opts);
    });
  }

  /**
   * Runs one call in its own cgroup (a child of the session's, narrowed by the task's limits),
   * tracked for usage, and says which limit ended it, if one did. While the session holds its
   * most task groups the call waits for one (TaskGroups). Whatever is left in the group is gone
   * when this returns; the empty group is removed just after. A call that narrows no limit runs
   * in the group `claimAhead` gives, if it gives one (a warm child placed there ahead of it).
   */
  private async inTaskGroup(
    taskLimits: TaskLimits,
    options: RunOptions,
    start: (group: Cgroup | undefined, options: RunOptions, memoryMb: number | undefined) => Promise<ProcessResult>,
    claimAhead?: () => Promise<Cgroup | undefined>,
  ): Promise<SandboxedResult> {
    const memoryMb = smallestPositive(taskLimits.maxMemoryMb, this.parts.limits.maxMemoryMb);
    const cpuPercent = smallestPositive(taskLimits.maxCpuPercent, this.parts.limits.maxCpuPercent);
    // The session's own limits already hold its task groups (cgroups are hierarchical): a task
    // group gets limits only where the task narrows them.
    const session = this.parts.limits;
    options.phases?.mark('setup');
    const narrowed = {
      memoryBytes: memoryMb && memoryMb !== session.maxMemoryMb ? memoryMb * 1024 * 1024 : undefined,
      cpuPercent: cpuPercent !== session.maxCpuPercent ? cpuPercent : undefined,
    };
    const narrows = narrowed.memoryBytes !== undefined || narrowed.cpuPercent !== undefined;
    const group = (narrows ? undefined : await claimAhead?.()) ?? (await this.taskGroups?.take(narrowed, options.signal));
    // The session's OOM kills so far: at a small limit the kernel's victim may be the session's
    // warm process, not the call's child, and the call then dies of the session's limit all the same.
    const sessionOomsBefore = group ? await this.parts.cgroup?.oomKills() : undefined;
    options.phases?.mark('cgroup');
    let running: RunningProcess | undefined;
    try {
      const result = await start(
        group,
        {
          ...options,
          maxOutputBytes: this.host.options.maxTaskOutputBytes,
          onStart: (p) => {
            running = p;
            this.live.add(p);
            options.onStart?.(p);
          },
        },
        memoryMb,
      );
      return { ...result, killedBy: await this.killedBy(result, group, sessionOomsBefore) };
    } finally {
      if (running) this.live.delete(running);
      // Nothing of the task may outlive it; removing the empty group can wait.
      if (group) {
        await group.killProcesses().catch(() => undefined);
        this.taskGroups?.giveBack(group);
      }
      options.phases?.mark('exit');
    }
  }

  private async killedBy(result: ProcessResult, group: Cgroup | undefined, sessionOomsBefore?: number): Promise<KilledBy | undefined> {
    if (result.outputLimitExceeded) return 'output';
    if (result.exitCode === 0) return undefined;
    if (group && (await group.oomKills()) > 0) return 'memory';
    const sessionOoms = sessionOomsBefore === undefined ? undefined : await this.parts.cgroup?.oomKills();
    if (sessionOoms !== undefined && sessionOoms > sessionOomsBefore! && result.exitCode === 128 + 9) return 'memory';
    if (!group && this.parts.language.outOfMemory.test(result.stderr.text)) return 'memory';
    if (result.forkRefused || (group && (await group.forkRefusals()) > 0)) return 'pids';
    if (result.exitCode === 128 + 24) return 'cpu'; // SIGXCPU
    if (this.parts.disk) {
      // Full, as near as a filesystem gets: the write that failed may have wanted more than is left.
      const free = await this.starters.freeBytes(this.parts.workspace);
      const nearlyFull = Math.max(2 * 1024 * 1024, this.parts.disk.mb * 1024 * 1024 * 0.02);
      if (free !== undefined && free < nearlyFull) return 'disk';
    }
    return undefined;
  }
}
