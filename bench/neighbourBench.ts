import { createWorkerClient } from '../src/client/index.js';
import { runTask } from '../tests/helpers/tasks.js';
import type { RunningWorker } from '../tests/helpers/worker.js';
import { timed } from './timing.js';

/**
 * What one session pushing a shared resource past its bound costs another: a neighbour's
 * run.python print(1), idle and while the other session floods output, bursts concurrent calls
 * at its process limit, reads large files concurrently, and fills its disk. Each attack is
 * bounded in time (its own timeout) and stopped after the measurement.
 */

export interface NeighbourMeasure {
  attack: string;
  idleMs: number[];
  underAttackMs: number[];
}

const ATTACKS: { attack: string; start: (worker: RunningWorker, sessionId: string, signal: AbortSignal) => Promise<unknown> }[] = [
  {
    attack: 'prints short lines as fast as it can',
    start: (w, sessionId, signal) =>
      runTask(
        w.tasks,
        { sessionId, toolName: 'run.python', arguments: { code: 'i = 0\nwhile True:\n    print(i)\n    i += 1' }, constraints: { timeoutSeconds: 20 } },
        signal,
      ),
  },
  {
    attack: 'runs 200 calls at once (past its process limit)',
    start: (w, sessionId, signal) =>
      Promise.all(
        Array.from({ length: 200 }, () =>
          runTask(
            w.tasks,
            { sessionId, toolName: 'run.python', arguments: { code: 'import time\ntime.sleep(1)' }, constraints: { timeoutSeconds: 20 } },
            signal,
          ),
        ),
      ),
  },
  {
    attack: 'reads a 32 MB file 16 at a time, again and again',
    start: async (w, sessionId, signal) => {
      while (!signal.aborted)
        await Promise.all(Array.from({ length: 16 }, () => runTask(w.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'big.txt' } }, signal)));
    },
  },
  {
    attack: 'fills its disk as fast as it can',
    start: (w, sessionId, signal) =>
      runTask(
        w.tasks,
        {
          sessionId,
          toolName: 'run.python',
          arguments: {
            code: 'import os\nwhile True:\n    with open("fill", "wb") as f:\n        try:\n            while True: f.write(b"x" * (1 << 20))\n        except OSError: pass\n    os.remove("fill")',
          },
          constraints: { timeoutSeconds: 20 },
        },
        signal,
      ),
  },
];

export async function neighbourBench(worker: RunningWorker): Promise<NeighbourMeasure[]> {
  const { sessionId: neighbour } = await worker.sessions.createSession({ workspaceId: 'neighbour' });
  // A connection of its own: what is measured is the worker, not one HTTP/2 connection's queue.
  const client = createWorkerClient(worker.address);
  const print = async () => {
    const run = await runTask(client.tasks, { sessionId: neighbour, toolName: 'run.python', arguments: { code: 'print(1)' } });
    if (run.result?.outputs.stdout !== '1\n') throw new Error(`neighbour run.python failed: ${JSON.stringify(run.result)}`);
  };
  const out: NeighbourMeasure[] = [];
  try {
    for (const { attack, start } of ATTACKS) {
      const { sessionId: attacker } = await worker.sessions.createSession({ workspaceId: 'attacker', config: { limits: { maxDiskMb: 512 } } });
      await runTask(worker.tasks, { sessionId: attacker, toolName: 'run.python', arguments: { code: 'open("big.txt", "w").write("x" * (32 << 20))' } });
      await timed(3, print);
      const idleMs = await timed(30, print);
      const stop = new AbortController();
      const running = start(worker, attacker, stop.signal).catch(() => undefined);
      // Let the attack get going: its first output, calls or reads are in flight.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const underAttackMs = await timed(30, print);
      stop.abort();
      await running;
      await worker.sessions.destroySession({ sessionId: attacker });
      out.push({ attack, idleMs, underAttackMs });
    }
  } finally {
    await worker.sessions.destroySession({ sessionId: neighbour }).catch(() => undefined);
    client.close();
  }
  return out;
}
