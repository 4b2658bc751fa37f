import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { makeDataDisk } from '../helpers/dataDisk.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// One session filling the host's disk for everyone: the data directory on a small filesystem of
// its own (1 GB, loop-mounted), sessions' disk limits reserved against it (WORKER_DISK_OVERCOMMIT
// = 1, the default). A session writing as fast as it can fills its own disk only; the others keep
// writing, no disk goes read-only, and the worker starts again on it.

const disk = makeDataDisk('codegen-disk-fill-', '1G');
const dataDir = disk.dataDir;
let worker: RunningWorker | undefined;

const env = { WORKER_DISK_OVERCOMMIT: '1', WORKER_SPARE_SESSIONS: '0', WORKER_DEFAULT_DISK_MB: '100', WORKER_CACHE_DISK_MB: '16' };

after(async () => {
  await stopHard(worker);
  disk.remove();
});

const WRITE_UNTIL_FULL = `
import errno
written = 0
try:
    with open("fill", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
            f.flush()
            written += 1
except OSError as e:
    print(errno.errorcode[e.errno], written)
`;

test('disk limits are reservations: what does not fit is refused, a session filling its disk hurts no other, a restart serves', async () => {
  worker = await startWorker({ dataDir, env });
  const create = (maxDiskMb: number) => worker!.sessions.createSession({ workspaceId: `w${maxDiskMb}`, config: { limits: { maxDiskMb } } });

  const tooLarge = (await worker.sessions.createSession({ workspaceId: 'x', config: { limits: { maxDiskMb: 2 ** 31 - 1 } } }).catch((e: unknown) => e)) as {
    code: Status;
    details: string;
  };
  assert.equal(tooLarge.code, Status.INVALID_ARGUMENT, tooLarge.details);
  assert.match(tooLarge.details, /max_disk_mb must be at most/);

  const filler = await create(500);
  const neighbour = await create(300);
  const refused = (await create(300).catch((e: unknown) => e)) as { code: Status; details: string };
  assert.equal(refused.code, Status.RESOURCE_EXHAUSTED, refused.details);
  assert.match(refused.details, /not enough disk for a session disk of 300 MB: it needs \d+ MB, \d+ MB can be reserved \(\d+ MB free/);
  const metrics = await (await fetch(`http://127.0.0.1:${worker.httpPort}/metrics`)).text();
  assert.match(metrics, /^codegen_data_disk_free_bytes \d+/m);
  assert.match(metrics, /^codegen_data_disk_committed_bytes \d+/m);

  // The filler writes until its own disk is full while the neighbour writes 200 MB beside it.
  const [filled, wrote] = await Promise.all([
    runTool(worker.tasks, filler.sessionId, 'run.python', { code: WRITE_UNTIL_FULL }),
    runTool(worker.tasks, neighbour.sessionId, 'run.python', {
      code: 'import os\nfor i in range(200):\n    open(f"n{i % 4}", "ab").write(os.urandom(1 << 20))\nprint(sum(os.path.getsize(f"n{i}") for i in range(4)) >> 20)',
    }),
  ]);
  assert.match(filled.stdout!, /^ENOSPC \d+/, 'the filler ran out of its own disk');
  assert.ok(Number(filled.stdout!.split(' ')[1]) >= 400, `the filler wrote most of its 500 MB: ${filled.stdout}`);
  assert.equal(wrote.stdout, '200\n', 'the neighbour wrote all it asked for');
  for (const options of disk.mountOptionsBelow()) assert.match(options, /^rw\b/, 'no session disk went read-only');
  await runTool(worker.tasks, neighbour.sessionId, 'fs.write', { path: 'after.txt', contents: 'still writable' });

  // The worker stops hard and starts again on the same (nearly full) disk, and serves.
  await stopHard(worker, 0);
  worker = await startWorker({ dataDir, env });
  assert.equal((await runTool(worker.tasks, neighbour.sessionId, 'fs.read', { path: 'after.txt' })).contents, 'still writable');
  const small = await create(20);
  await worker.sessions.destroySession({ sessionId: small.sessionId });
});
