import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

// `make test-unit` (the recipe `make test` runs first) from a checkout inside a directory only
// root can search, as a user's `git clone … ~/worker` under /root or a `mktemp -d` puts it: the
// tier must still run as nobody, and pass.

const ROOT = new URL('../../', import.meta.url).pathname;
const outer = mkdtempSync(join(tmpdir(), 'codegen-unit-tier-'));
after(() => rmSync(outer, { recursive: true, force: true }));

// Without node:test's marker of a child it runs: else the inner `node --test` skips every file.
const { NODE_TEST_CONTEXT: _, ...env } = process.env;

function run(command: string, args: string[], cwd: string) {
  return spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 300_000 });
}

test('the unit tier runs as nobody and passes from a checkout nobody can reach by its path', { skip: process.getuid?.() !== 0 && 'needs root' }, () => {
  assert.equal(statSync(outer).mode & 0o777, 0o700, 'mkdtemp makes a directory only its owner can search');
  const checkout = join(outer, 'worker');
  mkdirSync(checkout);
  // The working tree (what a clone of it holds), with the installed dependencies and the build
  // beside it, linked rather than copied where one filesystem allows.
  const copy = run(
    'sh',
    ['-ec', 'tar --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./.worker-data -cf - . | tar -xf - -C "$1"', 'copy', checkout],
    ROOT,
  );
  assert.equal(copy.status, 0, `copying the tracked files: ${copy.stderr}`);
  for (const dir of ['node_modules', 'dist']) {
    if (run('cp', ['-al', join(ROOT, dir), checkout], ROOT).status !== 0) {
      const copied = run('cp', ['-a', join(ROOT, dir), checkout], ROOT);
      assert.equal(copied.status, 0, copied.stderr);
    }
  }

  // -o: what is built is taken as built (the copy's sources are newer than its stamps). Two
  // files stand for the tier (the whole of it ran before this test): what is tested is where
  // it runs from and as whom.
  const some = 'UNIT_TESTS=dist/tests/unit/base64.test.js dist/tests/unit/config.test.js';
  const tier = run('make', ['--no-print-directory', '-o', 'dist/.built', '-o', 'node_modules/.installed', 'test-unit', some], checkout);
  const output = `${tier.stdout}\n${tier.stderr}`;
  assert.equal(tier.status, 0, `make test-unit failed in ${checkout}:\n${output.slice(-4000)}`);
  assert.match(output, /unit tier: as nobody, node alone on PATH/);
  assert.match(output, /^# fail 0$/m);
  assert.doesNotMatch(output, /^# pass 0$/m);
});
