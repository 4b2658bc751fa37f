import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status, type ClientError } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { makeDataDisk } from '../helpers/dataDisk.js';
import { servePackageIndex, type PackageIndex } from '../helpers/packageIndex.js';
import { runTask, runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// The package caches filling the host's disk for everyone: the data directory on a small
// filesystem of its own (320 MB), sessions' disks reserved against it (WORKER_DISK_OVERCOMMIT=1).
// One session installs large packages, one after another (its disk holds them all), which the
// worker keeps in its caches (the pip cache, the wheel store); another
// session meanwhile writes what its disk limit promised it. Unbounded, the caches take the room
// promised to the neighbour: its disk gets write errors and goes read-only. Bounded, the caches
// stay within WORKER_CACHE_DISK_MB: the neighbour writes all it was promised, nothing goes
// read-only, each install succeeds (pruning the caches when they are full) or fails alone with
// RESOURCE_EXHAUSTED naming the cache limit, and the worker starts again on the full disk.

const disk = makeDataDisk('codegen-cache-fill-', '320M');
const ROUNDS = 6;
const WHEEL_MB = 10;
const NEIGHBOUR_MB = 90;
const WRITTEN_MB = 85;
const STEP_MB = 5;
const env = { WORKER_DISK_OVERCOMMIT: '1', WORKER_SPARE_SESSIONS: '0', WORKER_DEFAULT_DISK_MB: '100', WORKER_CACHE_DISK_MB: '13' };
let index: PackageIndex;
let worker: RunningWorker | undefined;

before(async () => {
  const wheels = Array.from({ length: ROUNDS + 1 }, (_, i) => ({
    name: `bulky${i}`,
    version: '1.0.0',
    files: { [`bulky${i}/__init__.py`]: `N = ${i}\n` },
    randomFiles: { [`bulky${i}/blob.txt`]: WHEEL_MB * 1024 * 1024 },
  }));
  index = await servePackageIndex(wheels);
});

after(async () => {
  await stopHard(worker);
  await index?.close();
  disk.remove();
});

const WRITE_UNTIL_FULL = `
import errno
try:
    with open("fill", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
            f.flush()
except OSError as e:
    print(errno.errorcode[e.errno])
`;

/** Installs bulky<i> in the session: succeeds, or fails alone naming the cache limit. */
async function installRound(w: RunningWorker, sessionId: string, i: number): Promise<'installed' | 'refused'> {
  const run = await runTask(w.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: `bulky${i}==1.0.0` } });
  if (run.code === Status.OK && run.result?.status === TaskStatus.STATUS_SUCCESS) return 'installed';
  assert.equal(run.code, Status.RESOURCE_EXHAUSTED, `round ${i}: ${run.error?.details ?? ''} ${JSON.stringify(run.result?.outputs)}`);
  assert.match(run.error?.details ?? '', /WORKER_CACHE_DISK_MB/);
  return 'refused';
}

/** Appends `mb` MB to the file `name` in the session's workspace (fails the test on any error). */
async function write(w: RunningWorker, sessionId: string, name: string, mb: number): Promise<void> {
  const code = `import os\nwith open(${JSON.stringify(name)}, "ab") as f:\n    for _ in range(${mb}):\n        f.write(os.urandom(1 << 20))\n        f.flush()\n    os.fsync(f.fileno())\nprint(os.path.getsize(${JSON.stringify(name)}) >> 20)`;
  const out = await runTool(w.tasks, sessionId, 'run.python', { code });
  assert.ok(Number(out.stdout) >= mb, out.stdout);
}

test('the package caches cannot take the disk promised to other sessions: installs stay within WORKER_CACHE_DISK_MB; a restart serves', async () => {
  worker = await startWorker({ dataDir: disk.dataDir, env: { ...env, WORKER_PIP_INDEX_URL: index.url } });
  const w = worker;
  const filler = await w.sessions.createSession({ workspaceId: 'filler' });
  const neighbour = await w.sessions.createSession({ workspaceId: 'neighbour', config: { limits: { maxDiskMb: NEIGHBOUR_MB } } });

  // The neighbour keeps writing (STEP_MB at a time) while the rounds of installs run, up to what it was promised.
  let written = 0;
  let installing = true;
  const outcomes: string[] = [];
  const installs = (async () => {
    try {
      for (let i = 0; i < ROUNDS; i++) outcomes.push(await installRound(w, filler.sessionId, i));
    } finally {
      installing = false;
    }
  })();
  const writes = (async () => {
    while (installing && written < WRITTEN_MB - STEP_MB) {
      await write(w, neighbour.sessionId, `part${written}`, STEP_MB);
      written += STEP_MB;
    }
  })();
  await Promise.all([installs, writes]);
  // Then each uses what it was promised: the filler fills its own disk, the neighbour writes the rest.
  const full = await runTool(w.tasks, filler.sessionId, 'run.python', { code: WRITE_UNTIL_FULL });
  assert.match(full.stdout!, /^ENOSPC\n/, 'the filler ran out of its own disk, no other');
  await write(w, neighbour.sessionId, 'rest', WRITTEN_MB - written);
  assert.ok(outcomes.includes('installed'), `installs: ${outcomes.join(', ')}`);
  // One wheel leaves the caches' disk nearly full (the wheel store keeps it): the next install empties it first.
  assert.ok(
    w.logs.some((l) => l.message === 'package caches emptied' && l.why === 'nearly full'),
    'the caches were emptied when nearly full',
  );
  for (const options of disk.mountOptionsBelow()) assert.match(options, /^rw\b/, 'no disk went read-only');
  await runTool(w.tasks, neighbour.sessionId, 'fs.write', { path: 'after.txt', contents: 'still writable' });

  // Killed, and started again on the same disk: sessions and caches are there, and it serves.
  await stopHard(worker, 0);
  worker = await startWorker({ dataDir: disk.dataDir, env: { ...env, WORKER_PIP_INDEX_URL: index.url } });
  assert.equal((await runTool(worker.tasks, neighbour.sessionId, 'fs.read', { path: 'after.txt' })).contents, 'still writable');
  await worker.sessions.destroySession({ sessionId: filler.sessionId });
  // The filler's blocks come back once its lazily unmounted disk lets go of its image: until then
  // a new session may not fit (the 64 MB floor is a fifth of this small disk).
  const w2 = worker;
  let again: { sessionId: string } | undefined;
  await waitFor(async () => {
    again = await w2.sessions.createSession({ workspaceId: 'again', config: { limits: { maxDiskMb: 50 } } }).catch((err: ClientError) => {
      if (err.code === Status.RESOURCE_EXHAUSTED) return undefined;
      throw err;
    });
    return again !== undefined;
  }, 30_000);
  assert.equal(await installRound(worker, again!.sessionId, ROUNDS), 'installed');
  for (const options of disk.mountOptionsBelow()) assert.match(options, /^rw\b/, 'no disk went read-only');
});
