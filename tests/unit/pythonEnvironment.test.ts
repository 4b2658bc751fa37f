import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createPythonEnvironment, pythonEnvironmentAt } from '../../src/sandbox/languages/python/pythonEnvironment.js';
import type { PythonInterpreter } from '../../src/sandbox/languages/python/pythonInterpreter.js';

// The environment is laid out as files and links: no interpreter runs, so a made-up one will do.
const interpreter: PythonInterpreter = {
  executable: '/opt/python/bin/python3.12',
  version: '3.12.4',
  libName: 'python3.12',
  prefix: '/opt/python',
  pipVersion: '24.0',
  pipRunner: undefined,
  wheelInstaller: undefined,
};
const base = await mkdtemp(join(tmpdir(), 'unit-venv-'));
after(() => rm(base, { recursive: true, force: true }));

test('the paths of an environment follow the interpreter it is based on', () => {
  assert.deepEqual(pythonEnvironmentAt('/data/env', interpreter), {
    root: '/data/env',
    python: '/data/env/bin/python',
    sitePackages: '/data/env/lib/python3.12/site-packages',
  });
});

test('an environment is what `python -m venv --without-pip` makes: interpreter links, pyvenv.cfg, an empty site-packages', async () => {
  const root = join(base, 'env');
  const env = await createPythonEnvironment(root, interpreter);
  assert.deepEqual(env, pythonEnvironmentAt(root, interpreter));
  assert.deepEqual((await readdir(join(root, 'bin'))).sort(), ['python', 'python3', 'python3.12']);
  for (const name of ['python', 'python3', 'python3.12']) assert.equal(await readlink(join(root, 'bin', name)), interpreter.executable);
  assert.deepEqual(await readdir(env.sitePackages), []);
  assert.equal(
    await readFile(join(root, 'pyvenv.cfg'), 'utf8'),
    'home = /opt/python/bin\ninclude-system-site-packages = false\nversion = 3.12.4\nexecutable = /opt/python/bin/python3.12\n',
  );
});
