import { readFileSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { messageOf } from '../../../errors.js';
import { probeProgram } from '../../process/hostTools.js';
import { PYPA_INSTALLER } from './wheelInstaller.js';

/** The real interpreter sessions are based on, resolved once (python3 on PATH may be a slow shim). */
export interface PythonInterpreter {
  /** Absolute path of the interpreter binary, symlinks resolved. */
  executable: string;
  /** e.g. "3.11.7" */
  version: string;
  /** e.g. "python3.11": the folder name under lib/ */
  libName: string;
  /** The installation's prefix (sys.base_prefix): what a sandbox must show for Python to run. */
  prefix: string;
  /** The host pip's version, or undefined when the host has no pip (pkg.install then fails). */
  pipVersion: string | undefined;
  /** pip's `__pip-runner__.py`: runs the host's pip under another interpreter (what `pip --python` does). */
  pipRunner: string | undefined;
  /** The version of PyPA's installer (PYPA_INSTALLER) the interpreter imports, or undefined: stored wheels then go through pip. */
  wheelInstaller: string | undefined;
}

/** What the worker asks the interpreter: interpreterProbe.py, read once from the checkout (this module runs from dist/). */
const PROBE = readFileSync(new URL('../../../../../src/sandbox/languages/python/interpreterProbe.py', import.meta.url), 'utf8');

export class PythonUnavailableError extends Error {
  override name = 'PythonUnavailableError';
}

export async function resolvePythonInterpreter(command: string): Promise<PythonInterpreter> {
  let stdout: string;
  try {
    stdout = await probeProgram(command, ['-I', '-c', PROBE, PYPA_INSTALLER], { PATH: process.env.PATH ?? '/usr/bin:/bin' });
  } catch (err) {
    throw new PythonUnavailableError(`cannot run the Python interpreter '${command}' (set WORKER_PYTHON): ${messageOf(err)}`);
  }
  const probe = JSON.parse(stdout) as {
    executable: string;
    version: string;
    libName: string;
    prefix: string;
    pip: string | null;
    runner: string | null;
    installer: string | null;
  };
  if (!probe.executable) throw new PythonUnavailableError(`'${command}' did not report its executable path`);
  return {
    executable: await realpath(probe.executable),
    version: probe.version,
    libName: probe.libName,
    prefix: await realpath(probe.prefix),
    pipVersion: probe.pip ?? undefined,
    pipRunner: probe.runner ? await realpath(probe.runner) : undefined,
    wheelInstaller: probe.installer ?? undefined,
  };
}
