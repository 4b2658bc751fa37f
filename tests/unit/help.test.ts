import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadConfig, usage } from '../../src/config.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;
const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const rows = usage()
  .split('\n')
  .map((line) => /^ {2}--(\S+)\s+((?:WORKER|COORDINATOR)_\S+)\s.*\(default: (.*)\)$/.exec(line))
  .filter((match) => match !== null)
  .map(([, flag, env, shown]) => ({ flag: flag!, env: env!, shown: shown! }));

test('the server names itself, not the CLI, and lists --help and --version', () => {
  assert.match(usage(), /^Usage: codegen-mcp-worker \[flags\]\n/);
  assert.doesNotMatch(usage(), /codegen-worker\b/);
  assert.match(usage(), /^ {2}--help\s.*print this/m);
  assert.match(usage(), /^ {2}--version\s.*print the version/m);
});

test("--help shows each setting's default, as its flag takes it", () => {
  const settings = usage()
    .split('\n')
    .filter((line) => /^ {2}--\S+\s+(WORKER|COORDINATOR)_/.test(line));
  assert.equal(rows.length, settings.length, 'every setting shows a default');
  const defaults = loadConfig([], {});
  for (const { flag, shown } of rows) {
    // The default given as the flag is the configuration the worker has without it (sizes in MB where the flag takes MB).
    if (shown !== 'unset') assert.deepEqual(loadConfig([`--${flag}`, shown], {}), defaults, `--${flag} ${shown}`);
  }
  // "unset" exactly for the settings without a default.
  assert.equal(rows.filter((r) => r.shown === 'unset').length, Object.values(defaults).filter((v) => v === undefined).length);
  const shownOf = (env: string) => rows.find((r) => r.env === env)?.shown;
  assert.equal(shownOf('WORKER_GRPC_ADDR'), '127.0.0.1:50052');
  assert.equal(shownOf('WORKER_MAX_MESSAGE_MB'), '64');
  assert.equal(shownOf('WORKER_MAX_ARTIFACT_MB'), '1024');
  assert.equal(shownOf('WORKER_ALLOW_NETWORK'), 'false');
  for (const secret of ['WORKER_AUTH_TOKEN', 'WORKER_URL_SECRET', 'COORDINATOR_AUTH_TOKEN', 'COORDINATOR_ADDR']) assert.equal(shownOf(secret), 'unset', secret);
});

test('the server binary: --version prints the version, --help the usage; both exit 0 before starting anything', () => {
  const version = spawnSync(process.execPath, [MAIN, '--version'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(version.status, 0, version.stderr);
  assert.equal(version.stdout, `${VERSION}\n`);
  const help = spawnSync(process.execPath, [MAIN, '--help'], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, WORKER_AUTH_TOKEN: 'do-not-print-me' },
  });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Usage: codegen-mcp-worker /);
  assert.match(help.stdout, /--auth-token .*\(default: unset\)/);
  assert.doesNotMatch(help.stdout, /do-not-print-me/);
});
