import { join } from 'node:path';
import { makeDataDisk } from '../tests/helpers/dataDisk.js';
import { startWorker } from '../tests/helpers/worker.js';
import { fill, MIXED_1GB } from './checkpointBench.js';
import { spawnOnce, timed } from './timing.js';

/**
 * `make bench`'s fork rows (issue #26): ForkSession of one session, on a worker whose data
 * directory clones files (an XFS image made here, reflink=1, loop-mounted), for a 10 MB and a
 * 1 GB workspace (the checkpoint rows' tree: 20,090 files). The floor: the filesystem synced and
 * the same disk image cloned by cp --reflink (what any copy of that disk at one instant must do).
 */

export interface ForkMeasure {
  workspace: string;
  forkMs: number[];
  floorMs: number[];
  copyMethod: string;
}

/** 10 MB: ten files of 1 MB of random bytes. */
const TEN_MB = 'import os\nfor i in range(10):\n    open(f"f{i}.bin", "wb").write(os.urandom(1 << 20))';

export async function forkBench(rounds = 15): Promise<ForkMeasure[]> {
  const disk = makeDataDisk('codegen-bench-fork-', '20G', 'xfs');
  const worker = await startWorker({ dataDir: disk.dataDir, env: { WORKER_LOG_LEVEL: 'info', WORKER_SESSION_IDLE_SECONDS: '0', WORKER_MAX_SESSIONS: '64' } });
  const measures: ForkMeasure[] = [];
  try {
    for (const [workspace, code] of [
      ['10 MB', TEN_MB],
      ['1 GB (20,090 files)', MIXED_1GB],
    ] as const) {
      const { sessionId } = await worker.sessions.createSession({ workspaceId: 'bench-fork' });
      await fill(worker, sessionId, code);
      // Written back, as files written more than the kernel's dirty expiry (30 s) ago are: a fork right after pays that once.
      await spawnOnce('sync', []);
      let copyMethod = '';
      const forks: string[] = [];
      const forkMs = await timed(rounds, async () => {
        const reply = await worker.sessions.forkSession({ sessionId, count: 1, workspaceId: '' });
        copyMethod = reply.copyMethod;
        forks.push(...reply.sessionIds);
      });
      for (const id of forks) await worker.sessions.destroySession({ sessionId: id });
      const dirs = join(worker.dataDir, 'sessions', sessionId);
      const clone = join(disk.dataDir, 'floor.img');
      const floorMs = await timed(rounds, async () => {
        await spawnOnce('sh', ['-c', 'sync -f "$1" && cp --reflink=always "$2" "$3"', 'floor', join(dirs, 'disk'), join(dirs, 'disk.img'), clone]);
        await spawnOnce('rm', ['-f', clone]);
      });
      measures.push({ workspace, forkMs, floorMs, copyMethod });
      await worker.sessions.destroySession({ sessionId });
    }
  } finally {
    await worker.stop();
    disk.remove();
  }
  return measures;
}
