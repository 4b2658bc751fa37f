import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, openSync, closeSync, ftruncateSync, writeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { legacyCaches } from '../../src/storage/dataDirectory.js';
import { DiskBudget, markShared } from '../../src/storage/diskBudget.js';

const MB = 1024 * 1024;
const root = mkdtempSync(join(tmpdir(), 'unit-disk-budget-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A sparse image of `sizeMb` holding `writtenMb` (what it has written counts in the free space already). */
function image(session: string, sizeMb: number, writtenMb: number): void {
  mkdirSync(join(root, session));
  const fd = openSync(join(root, session, 'disk.img'), 'w');
  ftruncateSync(fd, sizeMb * MB);
  if (writtenMb) writeSync(fd, Buffer.alloc(writtenMb * MB, 1), 0, writtenMb * MB, 0);
  closeSync(fd);
}

test('images count what they may still grow by; reservations are refused past the room, held until released', () => {
  image('a', 100, 0);
  image('b', 100, 10);
  mkdirSync(join(root, 'no-image'));
  const budget = new DiskBudget({ path: root, imageDirs: [root], image: 'disk.img', overcommit: 1, floorBytes: 64 * MB });
  const space = budget.space();
  assert.ok(Math.abs(space.committedBytes - 190 * MB) < 1 * MB, `190 MB may still be written: ${space.committedBytes / MB}`);
  assert.ok(Math.abs(space.availableBytes - (space.freeBytes - 64 * MB - space.committedBytes)) < 1 * MB);

  const held = budget.reserve(10 * MB, 'a test');
  assert.ok(Math.abs(budget.space().committedBytes - 200 * MB) < 1 * MB, 'a reservation counts until released');
  held.release();
  held.release();
  assert.ok(Math.abs(budget.space().committedBytes - 190 * MB) < 1 * MB, 'released once, whatever the calls');

  assert.throws(
    () =>
      budget.reserve(
        budget.space().availableBytes + 1024 * MB, // well past it, whatever else writes to this disk meanwhile
        'a session disk of too many MB',
      ),
    (err: unknown) =>
      err instanceof WorkerError && err.code === Status.RESOURCE_EXHAUSTED && /not enough disk for a session disk of too many MB/.test(err.details),
  );
  const doubled = new DiskBudget({ path: root, imageDirs: [root], image: 'disk.img', overcommit: 2, floorBytes: 64 * MB });
  const twice = doubled.space();
  assert.ok(Math.abs(twice.availableBytes - ((twice.freeBytes - 64 * MB) * 2 - twice.committedBytes)) < 1 * MB, 'overcommit scales the free space');
});

test("the package caches' image counts as a session's does; the caches earlier versions kept in the data directory are named for removal", () => {
  const dir = join(root, 'with-caches');
  mkdirSync(dir);
  const fd = openSync(join(dir, 'caches.img'), 'w');
  ftruncateSync(fd, 50 * MB);
  closeSync(fd);
  const budget = new DiskBudget({
    path: dir,
    imageDirs: [],
    image: 'disk.img',
    files: [join(dir, 'caches.img'), join(dir, 'absent.img')],
    overcommit: 1,
    floorBytes: 0,
  });
  assert.ok(Math.abs(budget.space().committedBytes - 50 * MB) < 1 * MB, `the caches' image may grow by 50 MB: ${budget.space().committedBytes / MB}`);
  assert.deepEqual(
    legacyCaches(['pip-cache', 'npm-cache', 'go-cache', 'wheel-store', 'wheel-store.old-12-34', 'caches', 'caches.img', 'sessions', 'pip-cache2']),
    ['pip-cache', 'npm-cache', 'go-cache', 'wheel-store', 'wheel-store.old-12-34'],
  );
});

test("a fork's cloned image counts its whole size (its blocks are shared until written); its source, what it may still grow by", async () => {
  const dir = join(root, 'forks');
  mkdirSync(dir);
  const at = (session: string, sizeMb: number, writtenMb: number) => {
    mkdirSync(join(dir, session));
    const fd = openSync(join(dir, session, 'disk.img'), 'w');
    ftruncateSync(fd, sizeMb * MB);
    if (writtenMb) writeSync(fd, Buffer.alloc(writtenMb * MB, 1), 0, writtenMb * MB, 0);
    closeSync(fd);
  };
  at('source', 100, 10);
  at('fork', 100, 10);
  await markShared(join(dir, 'fork', 'disk.img'));
  const budget = new DiskBudget({ path: root, imageDirs: [dir], image: 'disk.img', overcommit: 1, floorBytes: 64 * MB });
  assert.ok(Math.abs(budget.space().committedBytes - 190 * MB) < 1 * MB, `90 + 100 MB: ${budget.space().committedBytes / MB}`);
});
