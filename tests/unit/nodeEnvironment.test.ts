import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createNodeEnvironment, environmentDependencies, installedInEnvironment } from '../../src/sandbox/languages/node/nodeEnvironment.js';

// A node environment's package.json and package-lock.json are the session's (a restore brings
// them from a checkpoint): what the worker reads back of them is checked, and no link followed.

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'codegen-node-env-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

test('a new environment: an empty package.json and node_modules; nothing installed', async () => {
  const root = join(dir, 'new');
  await createNodeEnvironment(root);
  assert.deepEqual(JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).dependencies, {});
  assert.deepEqual(await environmentDependencies(root), []);
  assert.deepEqual(await installedInEnvironment(root), []);
});

test("the environment's dependencies: registry specs only; paths, URLs, git and aliases are dropped", async () => {
  const root = join(dir, 'deps');
  await createNodeEnvironment(root);
  const dependencies = {
    'left-pad': '1.3.0',
    '@types/node': '^20',
    local: 'file:../../etc',
    git: 'git+http://127.0.0.1/x.git',
    alias: 'npm:left-pad@1',
    url: 'http://x/y.tgz',
    odd: 7,
  };
  await writeFile(join(root, 'package.json'), JSON.stringify({ dependencies }));
  assert.deepEqual(await environmentDependencies(root), ['left-pad@1.3.0', '@types/node@^20']);
});

test('a package.json or lock that is a link, too large or not JSON reads as nothing', async () => {
  const root = join(dir, 'links');
  await createNodeEnvironment(root);
  const elsewhere = join(dir, 'elsewhere.json');
  await writeFile(elsewhere, JSON.stringify({ dependencies: { 'left-pad': '1.3.0' }, packages: { 'node_modules/x': { version: '1.0.0' } } }));
  await rm(join(root, 'package.json'));
  await symlink(elsewhere, join(root, 'package.json'));
  await symlink(elsewhere, join(root, 'package-lock.json'));
  assert.deepEqual(await environmentDependencies(root), []);
  assert.deepEqual(await installedInEnvironment(root), []);
  const junk = join(dir, 'junk');
  await createNodeEnvironment(junk);
  await writeFile(join(junk, 'package.json'), '{ not json');
  await writeFile(join(junk, 'package-lock.json'), ' '.repeat(33 * 1024 * 1024));
  assert.deepEqual(await environmentDependencies(junk), []);
  assert.deepEqual(await installedInEnvironment(junk), []);
});

test('installed packages (checkpoint records): every package of the lock as name@version, each once, sorted', async () => {
  const root = join(dir, 'lock');
  await createNodeEnvironment(root);
  const packages = {
    '': { name: 'codegen-session' },
    'node_modules/left-pad': { version: '1.3.0' },
    'node_modules/greeter': { version: '2.0.0' },
    'node_modules/greeter/node_modules/left-pad': { version: '1.3.0' },
  };
  await writeFile(join(root, 'package-lock.json'), JSON.stringify({ lockfileVersion: 3, packages }));
  assert.deepEqual(await installedInEnvironment(root), ['greeter@2.0.0', 'left-pad@1.3.0']);
});
