import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { PythonInterpreter } from './pythonInterpreter.js';

/** Paths inside one session's Python environment. */
export interface PythonEnvironment {
  root: string;
  python: string;
  sitePackages: string;
}

export function pythonEnvironmentAt(root: string, interpreter: PythonInterpreter): PythonEnvironment {
  return { root, python: join(root, 'bin', 'python'), sitePackages: join(root, 'lib', interpreter.libName, 'site-packages') };
}

/**
 * Lays out a virtual environment without pip: what `python -m venv --without-pip` makes on
 * Linux (pyvenv.cfg beside bin/ with symlinks to the interpreter, and an empty site-packages),
 * written directly instead of by a Python process, so a session is ready in about a millisecond.
 * pkg.install fills it with the host's pip through `pip --python`.
 */
export async function createPythonEnvironment(root: string, interpreter: PythonInterpreter): Promise<PythonEnvironment> {
  const env = pythonEnvironmentAt(root, interpreter);
  const [major, minor] = interpreter.version.split('.');
  await Promise.all([
    mkdir(join(root, 'bin'), { recursive: true }).then(() =>
      Promise.all(['python', `python${major}`, `python${major}.${minor}`].map((name) => symlink(interpreter.executable, join(root, 'bin', name)))),
    ),
    mkdir(env.sitePackages, { recursive: true }).then(() =>
      writeFile(
        join(root, 'pyvenv.cfg'),
        `home = ${dirname(interpreter.executable)}\ninclude-system-site-packages = false\nversion = ${interpreter.version}\nexecutable = ${interpreter.executable}\n`,
      ),
    ),
  ]);
  return env;
}
