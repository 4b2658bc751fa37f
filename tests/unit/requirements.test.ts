import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { canonicalName, isIndexRequirement, parseRequirements } from '../../src/sandbox/languages/python/requirements.js';

test('plain names of the index (with extras, versions and markers) are fetched by the installer', () => {
  for (const requirement of [
    'requests',
    'tinydep==1.2.0',
    'Django>=4,<5',
    'a.b-c_d',
    'pkg[extra1,extra2]>=1.0',
    'pkg (>=1.0)',
    'pkg~=1.4.2',
    "pkg; python_version >= '3.8'",
    'pkg==1.0.*',
    'x===1.0+local',
  ]) {
    assert.equal(isIndexRequirement(requirement), true, requirement);
  }
});

test("paths, URLs and anything else are left to the session's own pip", () => {
  for (const requirement of [
    'probe @ file:///workspace/pkg',
    './pkg',
    '/workspace/pkg',
    'file:///workspace/pkg',
    'git+https://example.com/x.git',
    'https://example.com/x.tar.gz',
    'x.whl',
    'pkg.tar.gz',
    'a.zip',
    'pkg @ https://evil/x.tar.gz',
    '.',
    'pkg==1.0 extra',
    'pkg==1.0; x @ y',
    'pkg=1.0',
  ]) {
    assert.equal(isIndexRequirement(requirement), false, requirement);
  }
});

test('requirement text: comments and blank lines skipped, pip options refused, empty refused', () => {
  assert.deepEqual(parseRequirements('a\n\n# c\nb==1 # pinned\r\n'), ['a', 'b==1']);
  for (const text of ['--index-url http://evil/', '-r /etc/passwd', '\n# nothing\n']) {
    assert.throws(
      () => parseRequirements(text),
      (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT,
      text,
    );
  }
});

test('a # starts a comment only at the start of a line or after whitespace; a line starting with a dash (after blanks) is a pip option and refused', () => {
  assert.deepEqual(parseRequirements('pkg#egg\n  other  # note'), ['pkg#egg', 'other']);
  assert.throws(() => parseRequirements('a\n   --extra-index-url http://evil/'), /not pip options: "--extra-index-url http:\/\/evil\/"/);
  assert.throws(() => parseRequirements('-e .'), /not pip options/);
});

test('canonicalName: PEP 503 normalisation (lower case, runs of -_. become one -)', () => {
  assert.equal(canonicalName('Django'), 'django');
  assert.equal(canonicalName('zope.interface'), 'zope-interface');
  assert.equal(canonicalName('Foo__Bar-.baz'), 'foo-bar-baz');
  assert.equal(canonicalName('a_b'), canonicalName('A-B'));
});

test('archive-looking names are not index names, whatever their case; names that only contain such words are', () => {
  for (const requirement of ['pkg.WHL', 'x.tar.bz2', 'x.tgz']) assert.equal(isIndexRequirement(requirement), false, requirement);
  for (const requirement of ['whl', 'zipp', 'tarfile-utils', 'wheel>=0.40']) assert.equal(isIndexRequirement(requirement), true, requirement);
});
