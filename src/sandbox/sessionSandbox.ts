import { access, constants, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors } from '../errors.js';
import { measureTaskProcesses, type ProcessUsage } from './processTree.js';
import type { PythonEnvironment } from './pythonEnvironment.js';
import type { PythonInterpreter } from './pythonInterpreter.js';
import { runProcess, type ProcessResult, type RunOptions, type RunningProcess } from './runProcess.js';

export interface SandboxSettings {
  interpreter: PythonInterpreter;
  pipIndexUrl: string | undefined;
  pipCacheDir: string;
}

export interface PipInstallResult extends ProcessResult {
  /** pip's `--report`: what the requirements resolved to and were installed. */
  report: { install?: { requested?: boolean; metadata?: { name?: string; version?: string } }[] } | undefined;
}

const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * Where one session's processes run: its workspace as the working directory, its own Python
 * environment, and only the environment variables the session was given plus what Python needs.
 * The only way the domain starts processes.
 */
export class SessionSandbox {
  private readonly live = new Set<RunningProcess>();

  constructor(
    readonly workspace: string,
    readonly environment: PythonEnvironment,
    private readonly sessionEnv: Record<string, string>,
    private readonly settings: SandboxSettings,
  ) {}

  /** Runs `code` in a fresh interpreter, cwd = workspace (which is thus on sys.path). */
  async runPython(code: string, options: RunOptions): Promise<ProcessResult> {
    await this.requirePython();
    return this.track(options, (opts) =>
      runProcess(
        {
          executable: this.environment.python,
          args: ['-u', '-'],
          cwd: this.workspace,
          env: {
            PATH: `${join(this.environment.root, 'bin')}:${SYSTEM_PATH}`,
            HOME: this.workspace,
            LANG: 'C.UTF-8',
            VIRTUAL_ENV: this.environment.root,
            PYTHONUNBUFFERED: '1',
            ...this.sessionEnv,
          },
          stdin: code,
        },
        opts,
      ),
    );
  }

  /** Installs requirements into the session's environment with the host's pip. */
  async pipInstall(requirements: string[], options: RunOptions): Promise<PipInstallResult> {
    await this.requirePython();
    if (this.settings.interpreter.pipVersion === undefined) {
      throw errors.pythonNotFound(`the host interpreter ${this.settings.interpreter.executable} has no pip, which pkg.install needs`);
    }
    const scratch = await mkdtemp(join(tmpdir(), 'codegen-pip-'));
    try {
      const reportPath = join(scratch, 'report.json');
      const index = this.settings.pipIndexUrl ? ['--index-url', this.settings.pipIndexUrl] : [];
      const result = await this.track(options, (opts) =>
        runProcess(
          {
            executable: this.settings.interpreter.executable,
            args: ['-m', 'pip', '--python', this.environment.python, 'install', '--no-input', '--progress-bar', 'off', '--report', reportPath, ...index, ...requirements],
            cwd: this.workspace,
            env: {
              PATH: SYSTEM_PATH,
              HOME: scratch,
              LANG: 'C.UTF-8',
              // Only the worker's configured index counts: no host pip.conf, no PIP_* variables.
              PIP_CONFIG_FILE: '/dev/null',
              PIP_DISABLE_PIP_VERSION_CHECK: '1',
              PIP_CACHE_DIR: this.settings.pipCacheDir,
              PYTHONUNBUFFERED: '1',
              ...proxyVariables(),
            },
          },
          opts,
        ),
      );
      const report = await readFile(reportPath, 'utf8').then(
        (raw) => JSON.parse(raw) as PipInstallResult['report'],
        () => undefined,
      );
      return { ...result, report };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** Memory and CPU of the session's processes that are running now. */
  async usage(): Promise<ProcessUsage> {
    const samples = await Promise.all([...this.live].map((p) => measureTaskProcesses(p.pid, p.marker)));
    return samples.reduce((a, b) => ({ memoryBytes: a.memoryBytes + b.memoryBytes, cpuPercent: a.cpuPercent + b.cpuPercent }), { memoryBytes: 0, cpuPercent: 0 });
  }

  private async track<T>(options: RunOptions, run: (options: RunOptions) => Promise<T>): Promise<T> {
    let running: RunningProcess | undefined;
    try {
      return await run({
        ...options,
        onStart: (p) => {
          running = p;
          this.live.add(p);
          options.onStart?.(p);
        },
      });
    } finally {
      if (running) this.live.delete(running);
    }
  }

  private async requirePython(): Promise<void> {
    try {
      await access(this.environment.python, constants.X_OK);
    } catch {
      throw errors.pythonNotFound(`the session's interpreter ${this.environment.python} is missing or not executable; create a new session`);
    }
  }
}

/** Proxy settings are how a host reaches its package index, so pip keeps them. */
function proxyVariables(): Record<string, string> {
  const names = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'];
  return Object.fromEntries(names.filter((n) => process.env[n] !== undefined).map((n) => [n, process.env[n]!]));
}
