import assert from 'node:assert/strict';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { listenRefused, prepareDataDirectory, StartupRefused } from '../../src/startupChecks.js';

const base = await mkdtemp(join(tmpdir(), 'unit-startup-'));
after(() => rm(base, { recursive: true, force: true }));

test('listenRefused says a bind failure in terms of the setting', () => {
  const err = (code: string) => Object.assign(new Error(`listen ${code}: 0.0.0.0:80`), { code });
  const cases: [string, RegExp][] = [
    ['EADDRINUSE', /^WORKER_HTTP_ADDR 127\.0\.0\.1:50053 is already in use \(another process listens there\)$/],
    ['EADDRNOTAVAIL', /is not an address of this host$/],
    ['EACCES', /needs privileges this worker does not have \(a port below 1024\?\)$/],
    ['ENOTFOUND', /the host name does not resolve$/],
    ['EAI_AGAIN', /the host name does not resolve$/],
  ];
  for (const [code, pattern] of cases) {
    const refused = listenRefused('WORKER_HTTP_ADDR', '127.0.0.1:50053', err(code));
    assert.ok(refused instanceof StartupRefused, code);
    assert.match(refused.message, pattern);
  }
  // grpc-js reports a bind failure in its message only.
  assert.match(
    listenRefused('WORKER_GRPC_ADDR', 'h:1', new Error('No address added out of total 1 resolved: EADDRINUSE')).message,
    /^WORKER_GRPC_ADDR h:1 is already in use/,
  );
  const other = new Error('something else');
  assert.equal(listenRefused('X', 'h:1', other), other, 'anything else is passed on as it is');
});

test('prepareDataDirectory makes the directory and its missing parents', async () => {
  const dir = join(base, 'a', 'b', 'c');
  await prepareDataDirectory(dir);
  await access(dir);
  await prepareDataDirectory(dir); // existing: fine
});

test('a data directory that cannot be one is refused naming WORKER_DATA_DIR and the cause', async () => {
  const file = join(base, 'file');
  await writeFile(file, '');
  await assert.rejects(
    prepareDataDirectory(join(file, 'data')),
    (err: unknown) => err instanceof StartupRefused && err.message === `WORKER_DATA_DIR ${join(file, 'data')} is not a directory (or a parent of it is a file)`,
  );
  await assert.rejects(
    prepareDataDirectory('/proc/nope/data'),
    (err: unknown) => err instanceof StartupRefused && err.message.startsWith('WORKER_DATA_DIR /proc/nope/data '),
  );
});

test('a regular file where the data directory should be is refused as not a directory', async () => {
  for (const [name, mode] of [
    ['executable-file', 0o755],
    ['plain-file', 0o644],
  ] as const) {
    const file = join(base, name);
    await writeFile(file, '', { mode });
    await assert.rejects(
      prepareDataDirectory(file),
      (err: unknown) => err instanceof StartupRefused && err.message === `WORKER_DATA_DIR ${file} is not a directory`,
    );
  }
});
