import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker } from '../tests/helpers/worker.js';
import { checkpointBench } from './checkpointBench.js';

/** `node dist/bench/checkpointBenchMain.js`: the checkpoint rows alone, on a worker of their own. */

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
const scratch = await mkdtemp(join(tmpdir(), 'codegen-bench-'));
const worker = await startWorker({ env: { WORKER_LOG_LEVEL: 'info', WORKER_SESSION_IDLE_SECONDS: '0' } });
try {
  const r = await checkpointBench(worker, scratch);
  const rate = (ms: number[]) => ms.map((m) => r.megabytes / (m / 1000));
  const show = (v: number[]) => v.map((x) => x.toFixed(1)).join(' ');
  process.stdout.write(
    [
      `checkpoint MB/s ${show(rate(r.checkpointMs))} | zip -r ${show(rate(r.zipMs))} | ratio ${(median(rate(r.checkpointMs)) / median(rate(r.zipMs))).toFixed(3)}`,
      `restore    MB/s ${show(rate(r.restoreMs))} | unzip  ${show(rate(r.unzipMs))} | ratio ${(median(rate(r.restoreMs)) / median(rate(r.unzipMs))).toFixed(3)}`,
      `1 GB: full checkpoint ${r.largeFullMs.toFixed(0)} ms; incremental after one file changed ms ${show(r.incrementalMs)}; find -printf over it ms ${show(r.findMs)}`,
    ].join('\n') + '\n',
  );
} finally {
  await worker.stop();
  await rm(scratch, { recursive: true, force: true });
}
