import { join } from 'node:path';
import { makeDiskImage, imageTools, unmountDiskImage } from '../src/sandbox/confine/diskImage.js';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { runTask } from '../tests/helpers/tasks.js';
import type { RunningWorker } from '../tests/helpers/worker.js';
import { spawnOnce, timed } from './timing.js';

/**
 * `make bench`'s checkpoint rows (issue #16), measured against zip -r and unzip of the same files in
 * the same run: a full checkpoint and restore of a 100 MB mixed workspace, and an incremental
 * checkpoint after one file changed in a 1 GB workspace. Returns the raw samples; bench/run.ts
 * turns them into rows.
 */

export interface CheckpointBenchResult {
  /** Megabytes the throughput rows divide by (the files written, as in `zip -r` of them). */
  megabytes: number;
  checkpointMs: number[];
  zipMs: number[];
  restoreMs: number[];
  unzipMs: number[];
  /** The 1 GB workspace: its full checkpoint once, then incremental ones after touching one file. */
  largeFullMs: number;
  incrementalMs: number[];
  /** The floor of a stat-based scan of that workspace: find(1) printing each entry's size, mtime and mode, in C. */
  findMs: number[];
}

/** 100 MB: half random (incompressible) in 100 kB files, half text in 25 kB files. */
const MIXED_100MB =
  'import os, random\nrandom.seed(7)\nfor i in range(500):\n    os.makedirs(f"bin/{i % 20}", exist_ok=True)\n    open(f"bin/{i % 20}/{i}.dat", "wb").write(os.urandom(100_000))\nwords = [f"word{i}" for i in range(5000)]\nfor i in range(2000):\n    os.makedirs(f"src/{i % 50}", exist_ok=True)\n    open(f"src/{i % 50}/{i}.py", "w").write(" ".join(random.choices(words, k=3600))[:25_000])';

/** About 1 GB: 20,000 small text files (100 MB, a source tree and its dependencies) and 90 binaries of 10 MB. */
export const MIXED_1GB =
  'import os\nblock = os.urandom(1 << 20)\nfor i in range(90):\n    os.makedirs(f"data/{i % 9}", exist_ok=True)\n    with open(f"data/{i % 9}/{i}.bin", "wb") as f:\n        for j in range(10):\n            f.write(bytes([i, j]) + block[2:])\ntext = ("def f(x):\\n    return x * 2\\n" * 200)[:5000]\nfor i in range(20000):\n    d = f"deps/{i % 200}/{(i // 200) % 10}"\n    os.makedirs(d, exist_ok=True)\n    open(f"{d}/{i}.py", "w").write(text)';

export async function fill(worker: RunningWorker, sessionId: string, code: string): Promise<void> {
  const filled = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 600 } });
  if (filled.result?.status !== TaskStatus.STATUS_SUCCESS) throw new Error(`could not fill the workspace: ${JSON.stringify(filled.result)}`);
}

/** Runs both scenarios on `worker` (started by the caller), writing zips and unzipped copies under `scratch`. */
export async function checkpointBench(worker: RunningWorker, scratch: string, rounds = 3): Promise<CheckpointBenchResult> {
  const big = (await worker.sessions.createSession({ workspaceId: 'bench-checkpoint' })).sessionId;
  const sessions = [big];
  try {
    await fill(worker, big, MIXED_100MB);
    const workspace = join(worker.dataDir, 'sessions', big, 'disk', 'workspace');
    const checkpointIds: string[] = [];
    const checkpointMs = await timed(rounds, async () => checkpointIds.push((await worker.sessions.checkpointSession({ sessionId: big })).checkpointId));
    const zipMs = await timed(rounds, (i) => spawnOnce('zip', ['-r', '-q', join(scratch, `w${i}.zip`), '.'], workspace));
    const restoreMs = await timed(rounds, async (i) => sessions.push((await worker.sessions.restoreSession({ checkpointId: checkpointIds[i] })).sessionId));
    // Into the same kind of disk a restore writes to: an ext4 image, loop-mounted (the session's disk).
    const image = join(scratch, 'unzip.img');
    const disk = join(scratch, 'unzip-disk');
    await makeDiskImage(image, disk, 1024, join(scratch, 'templates'), imageTools);
    let unzipMs: number[];
    try {
      unzipMs = await timed(rounds, (i) => spawnOnce('unzip', ['-q', join(scratch, `w${i}.zip`), '-d', join(disk, `u${i}`)]));
    } finally {
      await unmountDiskImage(disk);
    }

    const large = (await worker.sessions.createSession({ workspaceId: 'bench-checkpoint-1g' })).sessionId;
    sessions.push(large);
    await fill(worker, large, MIXED_1GB);
    const fullStart = performance.now();
    await worker.sessions.checkpointSession({ sessionId: large, incremental: true });
    const largeFullMs = performance.now() - fullStart;
    const incrementalMs: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const changed = await runTask(worker.tasks, {
        sessionId: large,
        toolName: 'fs.write',
        arguments: { path: `deps/7/3/${1407 + i * 200}.py`, contents: `changed ${i}\n` },
      });
      if (changed.result?.status !== TaskStatus.STATUS_SUCCESS) throw new Error(`could not change a file: ${JSON.stringify(changed.result)}`);
      const start = performance.now();
      const made = await worker.sessions.checkpointSession({ sessionId: large, incremental: true });
      incrementalMs.push(performance.now() - start);
      // The file, and its directory (an entry added changes the directory's time).
      const named = made.metadata?.modifiedFiles ?? [];
      if (named.length > 2 || !named.some((path) => path.endsWith(`/${1407 + i * 200}.py`)))
        throw new Error(`the incremental checkpoint names ${JSON.stringify(named)}, not the file changed`);
    }
    const largeWorkspace = join(worker.dataDir, 'sessions', large, 'disk', 'workspace');
    const findMs = await timed(rounds, () => spawnOnce('find', [largeWorkspace, '-printf', '%y %s %T@ %m\\n']));
    return { megabytes: 100, checkpointMs, zipMs, restoreMs, unzipMs, largeFullMs, incrementalMs, findMs };
  } finally {
    for (const sessionId of sessions) await worker.sessions.destroySession({ sessionId }).catch(() => undefined);
  }
}
