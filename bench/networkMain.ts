import { execFileSync } from 'node:child_process';
import { networkBench } from './networkBench.js';

// The network rows alone: node dist/bench/networkMain.js
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
const python = execFileSync('python3', ['-c', 'import os, sys; print(os.path.realpath(sys.executable))']).toString().trim();
const n = await networkBench(python);
for (const [name, ms] of Object.entries(n)) process.stdout.write(`${name}: p50 ${median(ms as number[]).toFixed(3)} ms (${(ms as number[]).length})\n`);
