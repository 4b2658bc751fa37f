// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { servePackageIndex } from './helpers/packageIndex.js';
import { callTool } from './helpers/tasks.js';
import { startWorker } from './helpers/worker.js';

// Disk limits are disk, not RAM: 1 GB written into a session lands on its disk, measured by the
// host's memory in use (so alone). Restarts and adoption: tests/adoption.test.ts.

const CALL = { deadline: 30_000 };

/**
 * Memory the host holds that it cannot write to disk or drop: shared memory and tmpfs (Shmem) and
 * unevictable pages (ramfs). A disk in RAM grows these by what is written to it; other
 * processes' own memory does not count (make lint runs beside the tier at SCHED_IDLE: its few
 * hundred MB, counted as MemTotal - MemAvailable, once made this test fail).
 */
function memoryInUse(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(info)![1]) * 1024;
  return kb('Shmem') + kb('Unevictable');
}

test("1 GB written into a session with max_disk_mb 2048 lands on disk, not in the host's memory; pkg.install cannot fill a small disk", async () => {
  const index = await servePackageIndex([{ name: 'tinydep', version: '1.2.0', files: { 'tinydep.py': 'VALUE = 7\n' } }]);
  try {
    const worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0', WORKER_PIP_INDEX_URL: index.url } });
    try {
      const big = (
        await worker.sessions.createSession(
          { workspaceId: 'big', config: { language: 'python', env: {}, limits: { maxDiskMb: 2048, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 } } },
          CALL,
        )
      ).sessionId;
      const before = memoryInUse();
      const wrote = await callTool(
        worker.tasks,
        big,
        'run.python',
        {
          code: 'import os\nchunk = os.urandom(1 << 20)\nwith open("gig.bin", "wb") as f:\n    for _ in range(1024):\n        f.write(chunk)\n    f.flush()\n    os.fsync(f.fileno())\nprint(os.path.getsize("gig.bin"))',
        },
        120_000,
      );
      assert.equal(wrote.result?.outputs.stdout, `${1 << 30}\n`, wrote.text.slice(-300));
      const grew = memoryInUse() - before;
      assert.ok(grew < 256 * 1024 * 1024, `host memory in use grew by ${(grew / 2 ** 20).toFixed(0)} MB for 1024 MB written`);
      assert.ok(((await worker.sessions.getSessionStatus({ sessionId: big }, CALL)).usage?.diskBytes ?? 0) >= 1 << 30);

      const small = (
        await worker.sessions.createSession(
          { workspaceId: 'small', config: { language: 'python', env: {}, limits: { maxDiskMb: 4, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 } } },
          CALL,
        )
      ).sessionId;
      // The session fills its disk to the brim; then nothing more fits, packages included.
      await callTool(worker.tasks, small, 'run.python', {
        code: 'f = open("filler.bin", "wb")\ntry:\n    while True:\n        f.write(b"x" * 4096)\n        f.flush()\nexcept OSError:\n    pass',
      });
      const install = await callTool(worker.tasks, small, 'pkg.install', { requirements: 'tinydep' }, 60_000);
      assert.ok([Status.INTERNAL, Status.RESOURCE_EXHAUSTED].includes(install.code), install.text.slice(-300));
      assert.match(install.text, /No space left on device|no space left on the session's disk/);
    } finally {
      await worker.stop();
    }
  } finally {
    await index.close();
  }
});
