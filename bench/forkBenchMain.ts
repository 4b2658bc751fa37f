import { forkBench } from './forkBench.js';

/** `node dist/bench/forkBenchMain.js`: the fork rows alone. */

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
const p95 = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length * 0.95)] ?? NaN;
for (const m of await forkBench()) {
  const show = (v: number[]) => v.map((x) => x.toFixed(1)).join(' ');
  process.stdout.write(
    `${m.workspace} (${m.copyMethod}): fork p50 ${median(m.forkMs).toFixed(1)} p95 ${p95(m.forkMs).toFixed(1)} ms [${show(m.forkMs)}]; floor p50 ${median(m.floorMs).toFixed(1)} ms [${show(m.floorMs)}]\n`,
  );
}
