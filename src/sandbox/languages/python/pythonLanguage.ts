import { readFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { requireReachable } from '../../network/sourceReachable.js';
import { errors } from '../../../errors.js';
import { namesIn } from '../../../storage/fileTree.js';
import type { Owner } from '../../../storage/owner.js';
import { removeTree } from '../../../storage/removeTree.js';
import { readUntrustedJson } from '../../../storage/untrustedJson.js';
import {
  SYSTEM_PATH,
  type CodeCommand,
  type SessionRoots,
  type InstallResult,
  type InstalledPackage,
  type Language,
  type LanguageSandbox,
} from '../language.js';
import type { Mount } from '../../confine/launcher.js';
import type { RunOptions, SandboxedResult } from '../../process/processSpec.js';
import { installerEnv } from '../installerEnv.js';
import { sandboxSeccompProgram } from '../../confine/seccomp.js';
import { prepareSharedCache } from '../../caches/sharedCache.js';
import { createPythonEnvironment, pythonEnvironmentAt } from './pythonEnvironment.js';
import { resolvePythonInterpreter, type PythonInterpreter } from './pythonInterpreter.js';
import { canonicalName, isIndexRequirement, PIP_INSTALLER } from './requirements.js';
import { PYPA_INSTALLER, WHEEL_INSTALLER_SOURCE } from './wheelInstaller.js';
import { DEFAULT_INDEX, indexPageDigest } from './indexPages.js';
import { WheelStore, type StoredWheel } from './wheelStore.js';
import { ZYGOTE_SOURCE } from '../../warm/zygote.js';

export interface PythonLanguageOptions {
  /** WORKER_PIP_INDEX_URL: the only index pip uses (none: pip's default). */
  pipIndexUrl: string | undefined;
  /** The shared pip cache, owned by the installer uid (see storage/dataDirectory.ts). */
  pipCache: string;
  /** Wheels fetched before, with the requirement lists they resolved (none: always pip). */
  wheelStore?: WheelStore | undefined;
}

/** Where pip's directories are inside a sandbox. */
const INSIDE = { pipCache: '/pip-cache', pipReport: '/pip-report', wheels: '/wheels' };

/**
 * Python sessions: a virtual environment per session on the host's interpreter (resolved once,
 * since python3 on PATH may be a slow shim), code run by `python -u -`, a warm interpreter
 * (zygote.py) that forks each call, and packages installed by the host's pip in two steps.
 */
export class PythonLanguage implements Language {
  readonly name = 'python';
  readonly machineSpecific = ['pyvenv.cfg'];
  readonly writablePaths = [];
  readonly installer = PIP_INSTALLER;
  readonly installerCacheInside = INSIDE.pipCache;
  readonly outOfMemory = /\bMemoryError\b/;
  readonly selfCheck = { code: 'import os\nprint(6 * 7, os.path.exists("/etc/shadow"), os.getuid())', isolated: '42 False', plain: '42' };
  readonly systemMounts: Mount[];
  readonly toolchainPath: string[];

  private constructor(
    readonly interpreter: PythonInterpreter,
    private readonly options: PythonLanguageOptions,
  ) {
    // The interpreter's installation, read-only at its own path (the environment links to it).
    const prefix = interpreter.prefix;
    this.systemMounts = prefix === '/usr' || prefix.startsWith('/usr/') ? [] : [{ host: prefix, inside: prefix, writable: false }];
    this.toolchainPath = this.systemMounts.length > 0 ? [dirname(interpreter.executable)] : [];
  }

  /** WORKER_PYTHON resolved to its real interpreter (PythonUnavailableError when it cannot run). */
  static async resolve(command: string, options: PythonLanguageOptions): Promise<PythonLanguage> {
    return new PythonLanguage(await resolvePythonInterpreter(command), options);
  }

  describe(): Record<string, string> {
    return { python: this.interpreter.executable, python_version: this.interpreter.version, pip_version: this.interpreter.pipVersion ?? 'none' };
  }

  /** The shared pip cache, the fetching uid's. */
  async prepareHost(installer: Owner | undefined): Promise<void> {
    await prepareSharedCache(this.options.pipCache, installer);
  }

  async createEnvironment(root: string): Promise<void> {
    await createPythonEnvironment(root, this.interpreter);
  }

  /** The environment's bin/python is there (looked at without following anything the session made). */
  async checkEnvironment(root: string): Promise<void> {
    if (!(await namesIn(root, ['bin'])).includes('python')) {
      throw errors.pythonNotFound("the session's interpreter (bin/python of its environment) is missing; create a new session");
    }
  }

  runCommand(environment: string): CodeCommand {
    return {
      command: [join(environment, 'bin', 'python'), '-u', '-'],
      env: { PATH: `${environment}/bin:${SYSTEM_PATH}`, VIRTUAL_ENV: environment, PYTHONUNBUFFERED: '1' },
    };
  }

  warmCommand(environment: string, socket: string): string[] {
    return [join(environment, 'bin', 'python'), '-u', '-c', ZYGOTE_SOURCE, socket];
  }

  /** The host interpreter, isolated (-I: no PYTHON* variables, no site directory of the user's), running the zygote. */
  zygoteCommand(socket: string): string[] {
    return [this.interpreter.executable, '-I', '-u', '-c', ZYGOTE_SOURCE, socket];
  }

  async installedPackages(roots: SessionRoots): Promise<string[]> {
    return (await this.sitePackagesNames(roots.environment))
      .map((n) => /^(.+)-([^-]+)\.dist-info$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => `${m[1]}==${m[2]}`)
      .sort();
  }

  /**
   * Installs requirements into the session's environment, in two steps that never mix powers:
   *
   * 1. fetch: the worker's installer uid, with network and the shared pip cache, downloads the
   *    wheels of the index's packages (plain names) and their dependencies. It sees neither the
   *    workspace nor the environment, and `--only-binary=:all:` means it runs no package's
   *    code: nothing the session controls reaches a process that can write what other sessions
   *    read.
   * 2. install: the session's own uid, with the session's network policy and no shared cache,
   *    installs from those wheels (and, with WORKER_ALLOW_NETWORK, the index), building local
   *    paths, URLs and source distributions: code the session controls runs with its powers.
   */
  async install(sandbox: LanguageSandbox, requirements: string[], options: RunOptions): Promise<InstallResult> {
    if (this.interpreter.pipVersion === undefined) throw errors.pythonNotFound('the host interpreter has no pip, which pkg.install needs');
    const fromIndex = requirements.filter(isIndexRequirement);
    const key = WheelStore.key(fromIndex, this.options.pipIndexUrl, sandbox.cacheKey);
    const stored = fromIndex.length === requirements.length ? await this.installStored(sandbox, requirements, key, options) : undefined;
    if (stored) return stored;
    const made = await Promise.allSettled([sandbox.scratchDirectory('pip-wheels-', 'installer'), sandbox.scratchDirectory('pip-report-', 'session')]);
    const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
    if (failed) {
      await Promise.all(made.flatMap((m) => (m.status === 'fulfilled' ? [removeTree(m.value)] : [])));
      throw failed.reason;
    }
    const [wheels, reports] = made.map((m) => (m as PromiseFulfilledResult<string>).value) as [string, string];
    try {
      if (fromIndex.length > 0) await requireReachable(this.options.pipIndexUrl ?? DEFAULT_INDEX, 'WORKER_PIP_INDEX_URL');
      const fetched = fromIndex.length > 0 ? await this.fetch(sandbox, fromIndex, wheels, options) : undefined;
      if (fetched && fetched.exitCode !== 0 && !sandbox.allowNetwork) {
        const hint =
          "pkg.install: the index has no wheel for one of these packages (or it is missing). Packages are installed from wheels; building one from source runs as the session's own code, which needs WORKER_ALLOW_NETWORK=true to fetch it.";
        return { ...fetched, stderr: { ...fetched.stderr, text: `${fetched.stderr.text}${hint}\n` }, installed: undefined };
      }
      const result = await this.installFrom(sandbox, requirements, wheels, reports, options);
      // What the index resolved this list to serves the next session asking for the same.
      if (fetched?.exitCode === 0 && result.exitCode === 0 && fromIndex.length === requirements.length) {
        await this.wheelStore?.remember(key, wheels, this.pageDigest).catch(() => undefined);
      }
      return { ...result, installed: await readPipReport(join(reports, 'report.json')) };
    } finally {
      await Promise.all([removeTree(wheels), removeTree(reports)]);
    }
  }

  /**
   * The fast path: a list every part of which names an index package, resolved before (by any
   * session) and fresh in the wheel store, into an environment holding none of those
   * distributions yet (what to do with an installed one, pip decides), installed by PyPA's
   * installer (wheelInstaller.py drives it) as the session: no pip, no network. Undefined when it
   * does not apply.
   */
  private async installStored(sandbox: LanguageSandbox, requirements: string[], key: string, options: RunOptions): Promise<InstallResult | undefined> {
    if (!this.wheelStore) return undefined;
    // The index pages are read while site-packages is listed.
    const [wheels, present] = await Promise.all([this.wheelStore.lookup(key, this.pageDigest), this.distributionsIn(sandbox.environment.host)]);
    if (!wheels) return undefined;
    if (wheels.some((w) => present.has(canonicalName(w.project)))) return undefined;
    const requested = requirements.map((req) => canonicalName(/^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(req)?.[0] ?? req));
    const envDir = sandbox.isolate ? sandbox.environment.inside : sandbox.environment.host;
    const site = join(envDir, relative(sandbox.environment.host, pythonEnvironmentAt(sandbox.environment.host, this.interpreter).sitePackages));
    const wheelPath = (w: StoredWheel) => (sandbox.isolate ? `${INSIDE.wheels}/${w.name}` : w.path);
    // installer is under /usr, which every sandbox shows read-only at its own path.
    const task = [PYPA_INSTALLER, site, `${envDir}/bin`, requested.join(','), ...wheels.map(wheelPath)];
    const command = [`${envDir}/bin/python`, '-I', '-S', '-c', WHEEL_INSTALLER_SOURCE, ...task];
    const mounts: Mount[] = [
      ...this.systemMounts,
      { host: sandbox.environment.host, inside: sandbox.environment.inside, writable: true },
      ...wheels.map((w) => ({ host: w.path, inside: `${INSIDE.wheels}/${w.name}`, writable: false })),
    ];
    const cwd = sandbox.isolate ? sandbox.environment.inside : sandbox.environment.host;
    const env = { ...pipEnv(), PATH: `${envDir}/bin:${SYSTEM_PATH}` };
    const result = await sandbox.run({ command, cwd, env, mounts, network: false, as: 'session' }, options);
    if (result.exitCode === UNSUPPORTED_WHEEL && result.killedBy === undefined) return undefined;
    const installed = wheels.map((w) => ({ name: w.project, version: w.version, requested: requested.includes(canonicalName(w.project)) }));
    return { ...result, installed };
  }

  /** The wheel store, when stored wheels can be installed without pip (the interpreter imports PyPA's installer). */
  private get wheelStore(): WheelStore | undefined {
    return this.interpreter.wheelInstaller === undefined ? undefined : this.options.wheelStore;
  }

  /** Projects of the index pages a stored resolution came from, read as pip would read them now. */
  private readonly pageDigest = (project: string) => indexPageDigest(this.options.pipIndexUrl, project);

  /** The names in the environment's site-packages (listed without following links). */
  private async sitePackagesNames(root: string): Promise<string[]> {
    return namesIn(root, relative(root, pythonEnvironmentAt(root, this.interpreter).sitePackages).split('/'));
  }

  /** Canonical names of what site-packages holds in any form pip counts as installed (dist-info, egg-info, egg-link). */
  private async distributionsIn(root: string): Promise<Set<string>> {
    const found = (await this.sitePackagesNames(root)).map((n) => /^(.+?)(?:-[^-]*)?\.(?:dist-info|egg-info|egg-link)$/.exec(n)?.[1]);
    return new Set(found.filter((n): n is string => n !== undefined).map(canonicalName));
  }

  /** Step 1 of install: the wheels of index packages into `wheels`, as the installer. */
  private async fetch(sandbox: LanguageSandbox, requirements: string[], wheels: string, options: RunOptions): Promise<SandboxedResult> {
    const cacheDir = await sandbox.installerCache(this.options.pipCache);
    const wheelsDir = sandbox.isolate ? INSIDE.wheels : wheels;
    // No package code may run here: --only-binary keeps pip from choosing source builds, and a
    // filter forbidding exec stops the one it cannot refuse (a wheel's dependency given by URL
    // is built to read its metadata, always in a subprocess).
    const noExec = sandboxSeccompProgram({ denyExec: true });
    const launch = noExec ? ['-c', WITHOUT_EXEC, noExec.toString('hex')] : ['-m', 'pip'];
    const command = [
      this.interpreter.executable,
      '-I',
      ...launch,
      'download',
      '--no-input',
      '--progress-bar',
      'off',
      '--only-binary=:all:',
      '--dest',
      wheelsDir,
      ...this.indexOptions(),
      '--',
      ...requirements,
    ];
    const env = { ...pipEnv(), PIP_CACHE_DIR: sandbox.isolate ? INSIDE.pipCache : cacheDir };
    const mounts: Mount[] = [
      ...this.systemMounts,
      { host: cacheDir, inside: INSIDE.pipCache, writable: true },
      { host: wheels, inside: INSIDE.wheels, writable: true },
    ];
    return sandbox.run({ command, cwd: sandbox.isolate ? '/tmp' : wheels, env, mounts, network: true, as: 'installer' }, options);
  }

  /** Step 2 of install: everything into the environment, as the session. */
  private installFrom(sandbox: LanguageSandbox, requirements: string[], wheels: string, reports: string, options: RunOptions): Promise<SandboxedResult> {
    const interpreter = this.interpreter;
    const envDir = sandbox.isolate ? sandbox.environment.inside : sandbox.environment.host;
    const wheelsDir = sandbox.isolate ? INSIDE.wheels : wheels;
    const reportDir = sandbox.isolate ? INSIDE.pipReport : reports;
    // pip's runner under the session's interpreter skips starting the host interpreter first
    // (what `pip --python` does itself), when the sandbox shows it.
    const visible = (path: string) => path.startsWith('/usr/') || path.startsWith(`${interpreter.prefix}/`);
    const pip =
      interpreter.pipRunner && (!sandbox.isolate || visible(interpreter.pipRunner))
        ? [`${envDir}/bin/python`, interpreter.pipRunner]
        : [interpreter.executable, '-m', 'pip', '--python', `${envDir}/bin/python`];
    const sources = sandbox.allowNetwork ? [...this.indexOptions(), '--find-links', wheelsDir] : ['--no-index', '--find-links', wheelsDir];
    const command = [
      ...pip,
      'install',
      '--no-input',
      '--progress-bar',
      'off',
      '--no-cache-dir',
      '--report',
      `${reportDir}/report.json`,
      ...sources,
      '--',
      ...requirements,
    ];
    const env = { ...pipEnv(), PATH: `${envDir}/bin:${SYSTEM_PATH}` };
    const mounts: Mount[] = [
      ...this.systemMounts,
      { host: sandbox.workspace.host, inside: sandbox.workspace.inside, writable: true },
      { host: sandbox.environment.host, inside: sandbox.environment.inside, writable: true },
      { host: wheels, inside: INSIDE.wheels, writable: false },
      { host: reports, inside: INSIDE.pipReport, writable: true },
    ];
    const cwd = sandbox.isolate ? sandbox.workspace.inside : sandbox.workspace.host;
    return sandbox.run({ command, cwd, env, mounts, network: sandbox.allowNetwork, as: 'session' }, options);
  }

  private indexOptions(): string[] {
    return this.options.pipIndexUrl ? ['--index-url', this.options.pipIndexUrl] : [];
  }
}

/** wheelInstaller.py's "not for this path: nothing written, let pip do it". */
const UNSUPPORTED_WHEEL = 3;

function pipEnv(): Record<string, string> {
  return installerEnv({
    // Only the worker's configured index counts: no host pip.conf, no PIP_* variables.
    PIP_CONFIG_FILE: '/dev/null',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    PYTHONUNBUFFERED: '1',
  });
}

/** Runs pip under the fetch step's no-exec seccomp filter: pipWithoutExec.py, read once from the checkout (this module runs from dist/). */
const WITHOUT_EXEC = readFileSync(new URL('../../../../../src/sandbox/languages/python/pipWithoutExec.py', import.meta.url), 'utf8');

/** Largest pip report read back: it is written by the session's own pip, so untrusted. */
const MAX_REPORT_BYTES = 4 * 1024 * 1024;

/** pip's `--report`, read defensively: a regular file (no link followed), bounded, shape checked. */
async function readPipReport(file: string): Promise<InstalledPackage[] | undefined> {
  const parsed = await readUntrustedJson(dirname(file), [basename(file)], MAX_REPORT_BYTES);
  const install = (parsed as { install?: unknown } | null | undefined)?.install;
  if (!Array.isArray(install)) return undefined;
  return install.flatMap((item: unknown) => {
    const { requested, metadata } = (item ?? {}) as { requested?: unknown; metadata?: { name?: unknown; version?: unknown } };
    if (typeof metadata?.name !== 'string') return [];
    const version = typeof metadata.version === 'string' ? metadata.version.slice(0, 100) : undefined;
    return [{ name: metadata.name.slice(0, 200), version, requested: requested === true }];
  });
}
