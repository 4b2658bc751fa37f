import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { lockPackages } from '../../src/sandbox/languages/node/nodeEnvironment.js';
import { isRegistrySpec, NPM_INSTALLER, parseNpmRequirements, splitSpec } from '../../src/sandbox/languages/node/npmRequirements.js';

test('registry specs: names, scoped names, versions, ranges and tags', () => {
  for (const spec of [
    'left-pad',
    'left-pad@1.3.0',
    '@types/node',
    '@types/node@20.1.0',
    'lodash@^4.17.0',
    'lodash@~4.17',
    'react@>=17 <19',
    'x@1.x || 2.x',
    'x@latest',
    'x@next',
    'x@1.0.0-beta.1+build.5',
    'JSONStream@1.3.5',
    'a.b_c-d~e',
  ]) {
    assert.equal(isRegistrySpec(spec), true, spec);
  }
});

test('anything npm takes for a path, tarball, URL, git repository or alias is not a registry spec', () => {
  for (const spec of [
    './pkg',
    '../pkg',
    '/abs/pkg',
    '~/pkg',
    '.hidden',
    '_private',
    'file:../x',
    'x@file:../x',
    'user/repo',
    'github:user/repo',
    'x@github:user/repo',
    'git+https://example.com/x.git',
    'x@git+ssh://git@example.com/x.git',
    'https://example.com/x.tgz',
    'x@https://example.com/x.tgz',
    'alias@npm:left-pad@1.3.0',
    'pkg.tgz',
    'pkg.tar.gz',
    'x@',
    'x@ ',
    '@scope',
    '@scope/',
    'x@1.0.0/../../y',
    'a'.repeat(215),
  ]) {
    assert.equal(isRegistrySpec(spec), false, spec);
  }
});

test('splitSpec: the name and what follows its @ (a scope is part of the name)', () => {
  assert.deepEqual(splitSpec('left-pad'), { name: 'left-pad', version: undefined });
  assert.deepEqual(splitSpec('left-pad@1.3.0'), { name: 'left-pad', version: '1.3.0' });
  assert.deepEqual(splitSpec('@types/node@20'), { name: '@types/node', version: '20' });
  assert.deepEqual(splitSpec('@types/node'), { name: '@types/node', version: undefined });
});

test('requirement lines: blank lines and # comments skipped; options and non-registry specs INVALID_ARGUMENT', () => {
  assert.deepEqual(parseNpmRequirements('# tools\nleft-pad@1.3.0\n\n  @types/node  # types\r\nlodash@^4\n'), ['left-pad@1.3.0', '@types/node', 'lodash@^4']);
  for (const [text, pattern] of [
    ['-g left-pad', /not npm options/],
    ['--registry=http://evil.example', /not npm options/],
    ['left-pad\n./local', /registry only.*"\.\/local"/],
    ['git+https://example.com/x.git', /registry only/],
    ['x@npm:left-pad', /registry only/],
    ['# nothing\n\n', /list no packages/],
  ] as const) {
    assert.throws(
      () => parseNpmRequirements(text),
      (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details),
      text,
    );
  }
});

test('installedNames: each requested spec as name@version installed, the bare name when npm did not say', () => {
  const installed = [
    { name: 'left-pad', version: '1.3.0', requested: true },
    { name: '@types/node', version: '20.1.0', requested: true },
    { name: 'dep', version: '2.0.0', requested: false },
  ];
  assert.deepEqual(NPM_INSTALLER.installedNames(['left-pad@^1', '@types/node', 'missing'], installed), ['left-pad@1.3.0', '@types/node@20.1.0', 'missing']);
  assert.deepEqual(NPM_INSTALLER.installedNames(['left-pad'], undefined), ['left-pad']);
});

test('error lines: what failed, not npm advice or where its log is', () => {
  const stderr = [
    'npm error code E404',
    'npm error 404 Not Found - GET http://127.0.0.1:1/nope - Not found',
    "npm error 404  'nope@1.0.0' is not in this registry.",
    'npm error 404 Note that you can also install from a',
    'npm error Log files were not written due to the config logs-max=0',
  ];
  assert.equal(stderr.filter((l) => NPM_INSTALLER.errorLine.test(l)).pop(), 'npm error 404 Not Found - GET http://127.0.0.1:1/nope - Not found');
});

test('lockPackages: installed packages by path, nested ones not top-level; anything malformed left out', () => {
  const lock = {
    packages: {
      '': { name: 'codegen-session' },
      'node_modules/left-pad': { version: '1.3.0' },
      'node_modules/@types/node': { version: '20.1.0' },
      'node_modules/greeter/node_modules/left-pad': { version: '2.0.0' },
      'node_modules/../../etc': { version: '1' },
      'node_modules/bad': { version: 7 },
      elsewhere: { version: '1' },
    },
  };
  assert.deepEqual(lockPackages(lock), [
    { name: 'left-pad', version: '1.3.0', topLevel: true },
    { name: '@types/node', version: '20.1.0', topLevel: true },
    { name: 'left-pad', version: '2.0.0', topLevel: false },
    { name: 'bad', version: undefined, topLevel: true },
  ]);
  for (const junk of [undefined, null, 3, 'x', [], { packages: [] }, { packages: null }]) assert.deepEqual(lockPackages(junk), []);
});
