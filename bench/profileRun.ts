import { runTask } from '../tests/helpers/tasks.js';
import { startWorker } from '../tests/helpers/worker.js';
import { phaseBreakdown, phaseMeans } from './phases.js';

// Scratch profiler: node dist/bench/profileRun.js [tool] [n] [idle ms before each call]
const tool = process.argv[2] ?? 'run.python';
const n = Number(process.argv[3] ?? 50);
const idleMs = Number(process.argv[4] ?? 0);
const args: Record<string, Record<string, string>> = { echo: { message: 'hi' }, 'run.python': { code: 'print(1)' }, 'run.shell': { command: 'true' } };
const worker = await startWorker({ env: { WORKER_LOG_LEVEL: 'info' } });
try {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'p' });
  for (let i = 0; i < Number(process.env.WARM ?? 5); i++) await runTask(worker.tasks, { sessionId, toolName: tool, arguments: args[tool] });
  const before = await phaseMeans(worker.httpPort, tool);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    if (idleMs) await new Promise((resolve) => setTimeout(resolve, idleMs));
    const t = performance.now();
    await runTask(worker.tasks, { sessionId, toolName: tool, arguments: args[tool] });
    times.push(performance.now() - t);
  }
  const after = await phaseMeans(worker.httpPort, tool);
  times.sort((a, b) => a - b);
  console.log(`${tool} p50 ${times[n >> 1]!.toFixed(2)} ms mean ${(times.reduce((a, b) => a + b) / n).toFixed(2)}`);
  for (const { phase, ms } of phaseBreakdown(before, after)) console.log(`  ${phase} ${ms.toFixed(2)} ms`);
} finally {
  await worker.stop();
}
