import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { installWithCacheRoom, saysNoRoomIn, SharedExclusive, type CacheRoom } from '../../src/sandbox/caches/cacheDisk.js';

/** A cache disk of `limitMb` holding `usedMb`: nearly full from 90%; a prune empties it; every call is logged. */
function room(limitMb: number, usedMb: number): CacheRoom & { used: number; log: string[] } {
  const lock = new SharedExclusive();
  const stand = {
    limitMb,
    used: usedMb,
    log: [] as string[],
    nearlyFull: () => Promise.resolve(stand.used >= limitMb * 0.9),
    prune: (whenNearlyFull: boolean) =>
      lock.exclusive(() => {
        if (whenNearlyFull && stand.used < limitMb * 0.9) return Promise.resolve();
        stand.log.push('prune');
        stand.used = 0;
        return Promise.resolve();
      }),
    shared: <T>(use: () => Promise<T>) => lock.shared(use),
  };
  return stand;
}

/** An install that puts `mb` in the caches, failing (exit 1) when they cannot hold it. */
function installOf(caches: ReturnType<typeof room>, mb: number): () => Promise<Result> {
  return () => {
    caches.log.push('install');
    if (caches.used + mb > caches.limitMb) {
      caches.used = caches.limitMb;
      return Promise.resolve(result(1));
    }
    caches.used += mb;
    return Promise.resolve(result(0));
  };
}

interface Result {
  exitCode: number;
  stderr: { text: string };
}

function result(exitCode: number, stderr = ''): Result {
  return { exitCode, stderr: { text: stderr } };
}

const live = { signal: new AbortController().signal, cachePaths: ['/go-cache/', '/data/caches/'] };

test('an install that fits runs once; caches nearly full are emptied before it', async () => {
  const roomy = room(100, 10);
  assert.equal((await installWithCacheRoom(roomy, installOf(roomy, 20), live)).exitCode, 0);
  assert.deepEqual(roomy.log, ['install']);

  const nearly = room(100, 95);
  assert.equal((await installWithCacheRoom(nearly, installOf(nearly, 20), live)).exitCode, 0);
  assert.deepEqual(nearly.log, ['prune', 'install']);
});

test('an install failing on full caches empties them and runs once more; failing so again is RESOURCE_EXHAUSTED naming the limit', async () => {
  const half = room(100, 50);
  assert.equal((await installWithCacheRoom(half, installOf(half, 60), live)).exitCode, 0);
  assert.deepEqual(half.log, ['install', 'prune', 'install'], 'pruned, then it fits');

  const small = room(100, 0);
  await assert.rejects(
    installWithCacheRoom(small, installOf(small, 150), live),
    (err: unknown) => err instanceof WorkerError && err.code === Status.RESOURCE_EXHAUSTED && /WORKER_CACHE_DISK_MB 100 MB/.test(err.details),
  );
  assert.deepEqual(small.log, ['install', 'prune', 'install'], 'run twice at most');
});

test('a failure with room left in the caches, or a cancelled install, is returned as it is, never run again', async () => {
  const roomy = room(100, 10);
  const failing = () => {
    roomy.log.push('install');
    return Promise.resolve(result(1, 'write /workspace/x: no space left on device'));
  };
  assert.equal((await installWithCacheRoom(roomy, failing, live)).exitCode, 1, "room left in the caches (another disk's ENOSPC)");
  assert.deepEqual(roomy.log, ['install']);

  const full = room(100, 50);
  const cancelled = new AbortController();
  cancelled.abort();
  assert.equal((await installWithCacheRoom(full, installOf(full, 60), { ...live, signal: cancelled.signal })).exitCode, 1);
  assert.deepEqual(full.log, ['install'], 'a cancelled install is not retried');

  assert.equal((await installWithCacheRoom(undefined, () => Promise.resolve(result(3)), live)).exitCode, 3, 'unbounded: the install alone');
});

test('a write refused for room (ENOSPC thrown) counts as full caches; any other error passes through', async () => {
  const full = room(100, 50);
  let calls = 0;
  const throwing = () => {
    calls++;
    full.used = 100;
    return Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' }));
  };
  await assert.rejects(installWithCacheRoom(full, throwing, live), (err: unknown) => err instanceof WorkerError && err.code === Status.RESOURCE_EXHAUSTED);
  assert.equal(calls, 2);

  const other = room(100, 95);
  const refused = new WorkerError(Status.RESOURCE_EXHAUSTED, "the session's own disk is full");
  await assert.rejects(
    installWithCacheRoom(other, () => Promise.reject(refused), live),
    (err: unknown) => err === refused,
  );
});

test('an installer that removed what it was writing counts as out of room when its error names the caches', async () => {
  const empty = room(100, 0);
  let calls = 0;
  const go = () => {
    calls++;
    return Promise.resolve(result(1, 'go: x@v1: write /go-cache/cache/download/x/@v/v1.zip123.tmp: no space left on device'));
  };
  await assert.rejects(installWithCacheRoom(empty, go, live), (err: unknown) => err instanceof WorkerError && err.code === Status.RESOURCE_EXHAUSTED);
  assert.equal(calls, 2);
  assert.equal(saysNoRoomIn('npm error nospc ENOSPC: no space left on device, write /data/caches/npm-cache/_cacache/tmp/1', live.cachePaths), true);
  assert.equal(saysNoRoomIn('write /go-add-cache/x: no space left on device', live.cachePaths), false, "the session's own scratch");
  assert.equal(saysNoRoomIn('ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device', live.cachePaths), false);
  assert.equal(saysNoRoomIn('could not read /go-cache/x: permission denied', live.cachePaths), false);
});

test('a prune waits for the installs holding the caches, and installs after it wait for the prune', async () => {
  const lock = new SharedExclusive();
  const order: string[] = [];
  let releaseFirst!: () => void;
  const first = lock.shared(async () => {
    order.push('install 1 starts');
    await new Promise<void>((resolve) => (releaseFirst = resolve));
    order.push('install 1 ends');
  });
  const prune = lock.exclusive(async () => {
    order.push('prune');
  });
  const second = lock.shared(async () => {
    order.push('install 2');
  });
  await Promise.resolve();
  assert.deepEqual(order, ['install 1 starts'], 'neither the prune nor the later install runs while install 1 holds the caches');
  releaseFirst();
  await Promise.all([first, prune, second]);
  assert.deepEqual(order, ['install 1 starts', 'install 1 ends', 'prune', 'install 2']);

  // Shared holders run side by side; a failure releases the hold.
  await assert.rejects(lock.shared(() => Promise.reject(new Error('failed'))));
  const both: string[] = [];
  await Promise.all([lock.shared(async () => both.push('a')), lock.shared(async () => both.push('b'))]);
  assert.deepEqual(both.sort(), ['a', 'b']);
  await lock.exclusive(async () => undefined);
});
