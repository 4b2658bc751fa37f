import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdtemp, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { openRegularFileNoFollow, openTrustedDirectory } from '../storage/beneath.js';
import type { Owner } from '../storage/owner.js';
import { namesIn } from '../storage/fileTree.js';
import { removeTree } from '../storage/removeTree.js';
import { errors } from '../errors.js';
import type { Cgroup } from './cgroups.js';
import { unmountDiskImage, usedBytes } from './diskImage.js';
import { confine, type Mount } from './launcher.js';
import { measureProcessTrees, TASK_MARKER_VARIABLE, type ProcessUsage } from './processTree.js';
import type { PythonEnvironment } from './pythonEnvironment.js';
import { newTaskMarker, runProcess } from './runProcess.js';
import type { ProcessResult, RunOptions, RunningProcess } from './processSpec.js';
import type { SandboxContext } from './sandboxContext.js';
import { sandboxSeccompProgram } from './seccomp.js';
import { WarmInterpreter, WarmUnavailableError } from './warmInterpreter.js';
import { ZYGOTE_SOURCE } from './zygote.js';
import { smallestPositive } from '../limits.js';
import { deferred } from '../deferred.js';

/** A session's limits (0: none). */
export interface SessionLimits {
  maxMemoryMb: number;
  maxCpuPercent: number;
  maxDiskMb: number;
}

/** What one task may narrow (0: the session's). */
export interface TaskLimits {
  maxMemoryMb?: number | undefined;
  maxCpuPercent?: number | undefined;
}

export type KilledBy = 'memory' | 'cpu' | 'disk' | 'output';

export interface SandboxedResult extends ProcessResult {
  /** Which limit ended the process, when one did. */
  killedBy: KilledBy | undefined;
}

export interface PipInstallResult extends SandboxedResult {
  /** pip's `--report`: what the requirements resolved to and were installed. */
  report: { install?: { requested?: boolean; metadata?: { name?: string; version?: string } }[] } | undefined;
}

export interface SessionSandboxParts {
  workspace: string;
  environment: PythonEnvironment;
  env: Record<string, string>;
  /** Host uid of the session's code; undefined when the worker is not root. */
  owner: Owner | undefined;
  /** Host uid the fetching step of pkg.install runs as (it owns the shared pip cache). */
  installer: Owner | undefined;
  cgroup: Cgroup | undefined;
  limits: SessionLimits;
  /** The session's own disk (a mounted image of diskMb), when it has a disk limit. */
  disk: { mountPoint: string; mb: number; baselineBytes: number } | undefined;
  /** Where pkg.install's steps keep their scratch directories (on the session's disk). */
  scratch: string;
  /** Where the warm interpreter's socket lives (host path). */
  controlDir: string;
}

const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin';
/** Where things are inside an isolating sandbox. */
const INSIDE = { workspace: '/workspace', env: '/env', pipCache: '/pip-cache', pipReport: '/pip-report', wheels: '/wheels', control: '/run/codegen' };
/** Open files per sandboxed process: far below the worker's own, so no session can use up the host's. */
const SANDBOX_OPEN_FILES = 4096;
/** Unix socket paths longer than this do not fit in sockaddr_un. */
const MAX_SOCKET_PATH = 100;

/**
 * Where one session's processes run, and the only way the domain starts any: its workspace as
 * the working directory, its own Python environment, its own uid, cgroup and limits, and, with
 * bubblewrap, nothing else of the host. Each call is a fresh process in a fresh sandbox.
 */
export class SessionSandbox {
  private readonly live = new Set<RunningProcess>();
  private taskCounter = 0;
  private lastCpuSample = { at: process.hrtime.bigint(), ns: 0 };
  private warm: { startedAt: number; promise: Promise<WarmInterpreter | undefined> } | undefined;
  private pipQueue: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: SandboxContext,
    private readonly parts: SessionSandboxParts,
    private readonly release: () => void,
  ) {}

  get workspace(): string {
    return this.parts.workspace;
  }

  get environment(): PythonEnvironment {
    return this.parts.environment;
  }

  /** Who new workspace files must belong to, so the session's code can change them. */
  get owner(): Owner | undefined {
    return this.parts.owner;
  }

  private get isolate(): boolean {
    return this.host.options.mode === 'bwrap';
  }

  /** Runs `code` in a fresh interpreter, cwd = workspace (which is thus on sys.path). */
  async runPython(code: string, options: RunOptions, taskLimits: TaskLimits): Promise<SandboxedResult> {
    await this.requirePython();
    const envDir = this.isolate ? INSIDE.env : this.parts.environment.root;
    const workspace = this.isolate ? INSIDE.workspace : this.parts.workspace;
    const env = {
      PATH: `${envDir}/bin:${SYSTEM_PATH}`,
      HOME: this.isolate ? '/tmp' : workspace,
      USER: 'sandbox',
      LANG: 'C.UTF-8',
      VIRTUAL_ENV: envDir,
      PYTHONUNBUFFERED: '1',
      ...this.parts.env,
    };
    const mounts: Mount[] = [
      ...this.interpreterMounts(),
      { host: this.parts.workspace, inside: INSIDE.workspace, writable: true },
      { host: this.parts.environment.root, inside: INSIDE.env, writable: false },
    ];
    const python = join(envDir, 'bin', 'python');
    if (this.canWarm) {
      const warm = await this.warmInterpreter(python, workspace, env, mounts);
      if (warm) {
        try {
          return await this.inTaskGroup(taskLimits, options, (group, opts) => warm.run(code, opts, group!));
        } catch (err) {
          if (!(err instanceof WarmUnavailableError)) throw err;
        }
      }
    }
    return this.run([python, '-u', '-'], workspace, env, mounts, this.host.options.allowNetwork, this.parts.owner, taskLimits, { ...options, stdin: code });
  }

  /** Warm calls need task cgroups: they are how a forked child is limited, measured and killed. */
  private get canWarm(): boolean {
    const controllers = this.host.cgroups?.controllers ?? [];
    return this.host.options.warmInterpreter && this.parts.cgroup !== undefined && controllers.includes('memory') && controllers.includes('pids');
  }

  /**
   * The session's warm interpreter, started on first use and again if it died; concurrent first
   * calls share one start. Undefined (run cold) when it cannot start, retried after a minute.
   */
  private async warmInterpreter(python: string, cwd: string, env: Record<string, string>, mounts: Mount[]): Promise<WarmInterpreter | undefined> {
    const current = this.warm;
    if (current) {
      const warm = await current.promise;
      if (warm?.alive) return warm;
      if (warm === undefined && Date.now() - current.startedAt < 60_000) return undefined;
      if (this.warm !== current) return this.warmInterpreter(python, cwd, env, mounts);
    }
    const attempt = {
      startedAt: Date.now(),
      promise: this.startWarm(python, cwd, env, mounts).catch((err: Error) => {
        this.host.options.logger.warn('warm interpreter unavailable; running cold', { error: err.message });
        return undefined;
      }),
    };
    this.warm = attempt;
    return attempt.promise;
  }

  private async startWarm(python: string, cwd: string, env: Record<string, string>, mounts: Mount[]): Promise<WarmInterpreter> {
    const preferred = join(this.parts.controlDir, 'io.sock');
    const socketHost = preferred.length <= MAX_SOCKET_PATH ? preferred : join(tmpdir(), `codegen-${randomBytes(6).toString('hex')}`, 'io.sock');
    const socketInside = this.isolate ? `${INSIDE.control}/io.sock` : socketHost;
    const launch = confine([python, '-u', '-c', ZYGOTE_SOURCE, socketInside], cwd, env, {
      tools: this.host.tools,
      isolate: this.isolate,
      network: this.host.options.allowNetwork,
      mounts: [...mounts, { host: dirname(socketHost), inside: INSIDE.control, writable: false }],
      owner: this.parts.owner,
      cgroup: this.parts.cgroup,
      rlimits: { openFiles: SANDBOX_OPEN_FILES },
      seccomp: this.host.seccomp,
    });
    return WarmInterpreter.start(socketHost, this.parts.owner, launch, this.host.options.logger);
  }

  private async stopWarm(): Promise<void> {
    const warm = this.warm;
    this.warm = undefined;
    await (await warm?.promise)?.close();
  }

  /**
   * Installs requirements into the session's environment, in two steps that never mix powers:
   *
   * 1. fetch: the worker's installer uid, with network and the shared pip cache, downloads the
   *    wheels of `fromIndex` (plain names of the index) and their dependencies. It sees neither
   *    the workspace nor the environment, and `--only-binary=:all:` means it runs no package's
   *    code: nothing the session controls reaches a process that can write what other sessions
   *    read.
   * 2. install: the session's own uid, with the session's network policy and no shared cache,
   *    installs from those wheels (and, with WORKER_ALLOW_NETWORK, the index), building local
   *    paths, URLs and source distributions: code the session controls runs with its powers.
   */
  async pipInstall(requirements: { all: string[]; fromIndex: string[] }, options: RunOptions): Promise<PipInstallResult> {
    // One pip at a time per environment: two writing the same site-packages would corrupt it.
    const previous = this.pipQueue;
    const done = deferred();
    this.pipQueue = done.promise;
    try {
      await previous;
      options.signal.throwIfAborted();
      return await this.pipInstallNow(requirements, options);
    } finally {
      done.resolve();
    }
  }

  private async pipInstallNow(requirements: { all: string[]; fromIndex: string[] }, options: RunOptions): Promise<PipInstallResult> {
    await this.requirePython();
    const interpreter = this.host.options.interpreter;
    if (interpreter.pipVersion === undefined) throw errors.pythonNotFound('the host interpreter has no pip, which pkg.install needs');
    const made = await Promise.allSettled([this.scratchDirectory('pip-wheels-', this.parts.installer), this.scratchDirectory('pip-report-', this.parts.owner)]);
    const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
    if (failed) {
      await Promise.all(made.map((m) => (m.status === 'fulfilled' ? removeTree(m.value) : undefined)));
      const code = (failed.reason as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw errors.tooLarge("pkg.install: no space left on the session's disk (its max_disk_mb is full)");
      throw failed.reason;
    }
    const [wheels, reports] = made.map((m) => (m as PromiseFulfilledResult<string>).value) as [string, string];
    try {
      const fetched = requirements.fromIndex.length > 0 ? await this.pipFetch(requirements.fromIndex, wheels, options) : undefined;
      if (fetched && fetched.exitCode !== 0 && !this.host.options.allowNetwork) {
        const hint = 'pkg.install: the index has no wheel for one of these packages (or it is missing). Packages are installed from wheels; building one from source runs as the session\'s own code, which needs WORKER_ALLOW_NETWORK=true to fetch it.';
        return { ...fetched, stderr: { ...fetched.stderr, text: `${fetched.stderr.text}${hint}\n` }, report: undefined };
      }
      const result = await this.pipInstallFrom(requirements.all, wheels, reports, options);
      return { ...result, report: await readPipReport(join(reports, 'report.json')) };
    } finally {
      // New packages may bring .pth files, which only an interpreter start reads.
      await this.stopWarm();
      await Promise.all([removeTree(wheels), removeTree(reports)]);
    }
  }

  /** Step 1 of pipInstall: the wheels of index packages into `wheels`, as the installer. */
  private pipFetch(requirements: string[], wheels: string, options: RunOptions): Promise<SandboxedResult> {
    const interpreter = this.host.options.interpreter;
    const cacheDir = this.host.options.dirs.pipCache;
    const wheelsDir = this.isolate ? INSIDE.wheels : wheels;
    // No package code may run here: --only-binary keeps pip from choosing source builds, and a
    // filter forbidding exec stops the one it cannot refuse (a wheel's dependency given by URL
    // is built to read its metadata, always in a subprocess).
    const noExec = sandboxSeccompProgram({ denyExec: true });
    const launch = noExec ? ['-c', WITHOUT_EXEC, noExec.toString('hex')] : ['-m', 'pip'];
    const command = [interpreter.executable, '-I', ...launch, 'download', '--no-input', '--progress-bar', 'off', '--only-binary=:all:', '--dest', wheelsDir, ...this.indexOptions(), '--', ...requirements];
    const env = { ...this.pipEnv(), PIP_CACHE_DIR: this.isolate ? INSIDE.pipCache : cacheDir };
    const mounts: Mount[] = [...this.interpreterMounts(), { host: cacheDir, inside: INSIDE.pipCache, writable: true }, { host: wheels, inside: INSIDE.wheels, writable: true }];
    return this.run(command, this.isolate ? '/tmp' : wheels, env, mounts, true, this.parts.installer, {}, options);
  }

  /** Step 2 of pipInstall: everything into the environment, as the session. */
  private pipInstallFrom(requirements: string[], wheels: string, reports: string, options: RunOptions): Promise<SandboxedResult> {
    const interpreter = this.host.options.interpreter;
    const envDir = this.isolate ? INSIDE.env : this.parts.environment.root;
    const wheelsDir = this.isolate ? INSIDE.wheels : wheels;
    const reportDir = this.isolate ? INSIDE.pipReport : reports;
    // pip's runner under the session's interpreter skips starting the host interpreter first
    // (what `pip --python` does itself), when the sandbox shows it.
    const visible = (path: string) => path.startsWith('/usr/') || path.startsWith(`${interpreter.prefix}/`);
    const pip = interpreter.pipRunner && (!this.isolate || visible(interpreter.pipRunner)) ? [`${envDir}/bin/python`, interpreter.pipRunner] : [interpreter.executable, '-m', 'pip', '--python', `${envDir}/bin/python`];
    const sources = this.host.options.allowNetwork ? [...this.indexOptions(), '--find-links', wheelsDir] : ['--no-index', '--find-links', wheelsDir];
    const command = [...pip, 'install', '--no-input', '--progress-bar', 'off', '--no-cache-dir', '--report', `${reportDir}/report.json`, ...sources, '--', ...requirements];
    const env = { ...this.pipEnv(), PATH: `${envDir}/bin:${SYSTEM_PATH}` };
    const mounts: Mount[] = [
      ...this.interpreterMounts(),
      { host: this.parts.workspace, inside: INSIDE.workspace, writable: true },
      { host: this.parts.environment.root, inside: INSIDE.env, writable: true },
      { host: wheels, inside: INSIDE.wheels, writable: false },
      { host: reports, inside: INSIDE.pipReport, writable: true },
    ];
    const cwd = this.isolate ? INSIDE.workspace : this.parts.workspace;
    return this.run(command, cwd, env, mounts, this.host.options.allowNetwork, this.parts.owner, {}, options);
  }

  private indexOptions(): string[] {
    return this.host.options.pipIndexUrl ? ['--index-url', this.host.options.pipIndexUrl] : [];
  }

  private pipEnv(): Record<string, string> {
    return {
      PATH: SYSTEM_PATH,
      HOME: '/tmp',
      LANG: 'C.UTF-8',
      // Only the worker's configured index counts: no host pip.conf, no PIP_* variables.
      PIP_CONFIG_FILE: '/dev/null',
      PIP_DISABLE_PIP_VERSION_CHECK: '1',
      PYTHONUNBUFFERED: '1',
      ...proxyVariables(),
    };
  }

  /** A fresh directory in the data directory, handed to `owner` (removed by the caller). */
  private async scratchDirectory(prefix: string, owner: Owner | undefined): Promise<string> {
    const dir = await mkdtemp(join(this.parts.scratch, prefix));
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

  /** What the session's empty filesystem uses itself (not the session's bytes). */
  get diskBaselineBytes(): number {
    return this.parts.disk?.baselineBytes ?? 0;
  }

  /** Bytes the session holds on its own disk (no walk: its filesystem says); undefined without one. */
  async diskUsedBytes(): Promise<number | undefined> {
    if (!this.parts.disk) return undefined;
    return Math.max((await usedBytes(this.parts.disk.mountPoint)) - this.parts.disk.baselineBytes, 0);
  }

  /** Ends every process of the session and gives back what the sandbox holds (cgroup, mount, uid). */
  async dispose(): Promise<void> {
    await this.stopWarm();
    await this.parts.cgroup?.destroy().catch(() => undefined);
    if (this.parts.disk) await unmountDiskImage(this.parts.disk.mountPoint);
    this.release();
  }

  /** A cold start: a new process (and, isolating, a new sandbox) for this one call. */
  private run(
    command: string[],
    cwd: string,
    env: Record<string, string>,
    mounts: Mount[],
    network: boolean,
    owner: Owner | undefined,
    taskLimits: TaskLimits,
    options: RunOptions & { stdin?: string },
  ): Promise<SandboxedResult> {
    const controllers = this.host.cgroups?.controllers ?? [];
    return this.inTaskGroup(taskLimits, options, (group, opts, memoryMb) => {
      const marker = newTaskMarker();
      const spec = confine(command, cwd, { ...env, [TASK_MARKER_VARIABLE]: marker }, {
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
        seccomp: this.host.seccomp,
      });
      return runProcess({ ...spec, marker, stdin: options.stdin }, opts);
    });
  }

  /**
   * Runs one call in its own cgroup (a child of the session's, narrowed by the task's limits),
   * tracked for usage, and says which limit ended it, if one did. The group, and whatever is
   * left in it, is gone when this returns.
   */
  private async inTaskGroup(
    taskLimits: TaskLimits,
    options: RunOptions,
    start: (group: Cgroup | undefined, options: RunOptions, memoryMb: number | undefined) => Promise<ProcessResult>,
  ): Promise<SandboxedResult> {
    const memoryMb = smallestPositive(taskLimits.maxMemoryMb, this.parts.limits.maxMemoryMb);
    const cpuPercent = smallestPositive(taskLimits.maxCpuPercent, this.parts.limits.maxCpuPercent);
    // The session's own limits already hold its task groups (cgroups are hierarchical): a task
    // group gets limits only where the task narrows them.
    const session = this.parts.limits;
    const group = await this.parts.cgroup?.child(`task-${++this.taskCounter}`, {
      memoryBytes: memoryMb && memoryMb !== session.maxMemoryMb ? memoryMb * 1024 * 1024 : undefined,
      cpuPercent: cpuPercent !== session.maxCpuPercent ? cpuPercent : undefined,
    });
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
      return { ...result, killedBy: await this.killedBy(result, group) };
    } finally {
      if (running) this.live.delete(running);
      // Nothing of the task may outlive it; removing the empty group can wait.
      await group?.killProcesses().catch(() => undefined);
      void group?.destroy().catch(() => undefined);
    }
  }

  private async killedBy(result: ProcessResult, group: Cgroup | undefined): Promise<KilledBy | undefined> {
    if (result.outputLimitExceeded) return 'output';
    if (result.exitCode === 0) return undefined;
    if (group && (await group.oomKills()) > 0) return 'memory';
    if (!group && /\bMemoryError\b/.test(result.stderr.text)) return 'memory';
    if (result.exitCode === 128 + 24) return 'cpu'; // SIGXCPU
    if (this.parts.disk) {
      // Full, as near as a filesystem gets: the write that failed may have wanted more than is left.
      const fs = await statfs(this.parts.workspace).catch(() => undefined);
      const nearlyFull = Math.max(2 * 1024 * 1024, this.parts.disk.mb * 1024 * 1024 * 0.02);
      if (fs && fs.bavail * fs.bsize < nearlyFull) return 'disk';
    }
    return undefined;
  }

  /** The interpreter's installation, read-only at its own path (the environment links to it). */
  private interpreterMounts(): Mount[] {
    const prefix = this.host.options.interpreter.prefix;
    return prefix === '/usr' || prefix.startsWith('/usr/') ? [] : [{ host: prefix, inside: prefix, writable: false }];
  }

  /** The environment's bin/python is there (looked at without following anything the session made). */
  private async requirePython(): Promise<void> {
    if (!(await namesIn(this.parts.environment.root, ['bin'])).includes('python')) {
      throw errors.pythonNotFound("the session's interpreter (bin/python of its environment) is missing; create a new session");
    }
  }
}

/**
 * Runs pip (argv after the filter) with a seccomp filter (hex, argv[1]) installed first: the
 * fetch step's no-exec rule, which bubblewrap cannot apply (it would forbid starting pip).
 */
const WITHOUT_EXEC = String.raw`
import ctypes, runpy, sys
program = ctypes.create_string_buffer(bytes.fromhex(sys.argv[1]))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(program.raw) // 8, ctypes.cast(program, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    sys.exit("pkg.install: cannot forbid exec in the fetch step (errno %d)" % ctypes.get_errno())
sys.argv = ["pip"] + sys.argv[2:]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
`;

/** Proxy settings are how a host reaches its package index, so pip keeps them. */
function proxyVariables(): Record<string, string> {
  const names = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'];
  return Object.fromEntries(names.filter((n) => process.env[n] !== undefined).map((n) => [n, process.env[n]!]));
}

/** Largest pip report read back: it is written by the session's own pip, so untrusted. */
const MAX_REPORT_BYTES = 4 * 1024 * 1024;

/** pip's `--report`, read defensively: a regular file (no link followed), bounded, shape checked. */
async function readPipReport(file: string): Promise<PipInstallResult['report']> {
  const dir = await openTrustedDirectory(dirname(file)).catch(() => undefined);
  if (!dir) return undefined;
  try {
    const handle = await openRegularFileNoFollow(dir, [basename(file)]);
    if (!handle) return undefined;
    try {
      const { size } = await handle.stat();
      if (size > MAX_REPORT_BYTES) return undefined;
      const parsed = JSON.parse(await handle.readFile('utf8')) as unknown;
      const install = (parsed as { install?: unknown } | null)?.install;
      if (!Array.isArray(install)) return undefined;
      return {
        install: install.map((item: unknown) => {
          const { requested, metadata } = (item ?? {}) as { requested?: unknown; metadata?: { name?: unknown; version?: unknown } };
          const name = typeof metadata?.name === 'string' ? metadata.name.slice(0, 200) : undefined;
          const version = typeof metadata?.version === 'string' ? metadata.version.slice(0, 100) : undefined;
          return { requested: requested === true, metadata: { name, version } };
        }),
      };
    } catch {
      return undefined;
    } finally {
      await handle.close();
    }
  } finally {
    await dir.close();
  }
}
