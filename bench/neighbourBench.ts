import { createWorkerClient } from '../src/client/index.js';
import { runTask } from '../tests/helpers/tasks.js';
import type { RunningWorker } from '../tests/helpers/worker.js';
import { timed } from './timing.js';
import { startFlood, type Flood } from '../tests/helpers/flood.js';
import { startStress, type Stress } from '../tests/helpers/stress.js';

/**
 * What one session pushing a shared resource past its bound costs another: a neighbour's
 * run.python print(1), idle and while the other session floods output, bursts concurrent calls
 * at its process limit, makes calls at once again and again, forks at its process limit, reads
 * and writes large files concurrently, and fills its disk. Each attack is
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
    // Found by an attack: reads of 16 KiB or more were never paced, and the worker's cost is per line.
    attack: 'prints empty lines 16 KiB at a write as fast as it can',
    start: (w, sessionId, signal) =>
      stressing(
        startStress(w.address, sessionId, 'run.python', "import os\nprint('ready', flush=True)\nb = b'\\n' * 16384\nwhile True:\n    os.write(1, b)"),
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
    attack: 'makes 16 run.shell calls at once, again and again',
    start: (w, sessionId, signal) => stressing(startStress(w.address, sessionId, 'run.shell', 'echo ready', 16), signal),
  },
  {
    attack: 'forks as fast as it can, at its process limit',
    start: (w, sessionId, signal) =>
      stressing(
        startStress(
          w.address,
          sessionId,
          'run.python',
          ['import os', "print('ready', flush=True)", 'while True:', '    try:', '        os.fork()', '    except OSError:', '        pass'].join('\n'),
        ),
        signal,
      ),
  },
  {
    attack: 'reads a 32 MB file 16 at a time, again and again',
    start: (w, sessionId, signal) => flooding(startFlood(w.address, sessionId, 'read', { concurrency: 16, mb: 32 }), signal),
  },
  {
    attack: 'writes 32 MB files 16 at a time, again and again',
    start: (w, sessionId, signal) => flooding(startFlood(w.address, sessionId, 'write', { concurrency: 16, mb: 32 }), signal),
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

/** Runs a stress (calls again and again from a client process of its own) until `signal`. */
async function stressing(stress: Stress, signal: AbortSignal): Promise<void> {
  await stress.ready;
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  await stress.stop();
}

/** Runs a flood (from a client process of its own, as another tenant's would be) until `signal`; fails if a call answered wrongly. */
async function flooding(flood: Flood, signal: AbortSignal): Promise<void> {
  await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  const report = await flood.stop();
  if (report.bad > 0) throw new Error(`the flood's own calls answered wrongly: ${report.problems.join('; ')}`);
}

export async function neighbourBench(worker: RunningWorker, only?: string): Promise<NeighbourMeasure[]> {
  const { sessionId: neighbour } = await worker.sessions.createSession({ workspaceId: 'neighbour' });
  // A connection of its own: what is measured is the worker, not one HTTP/2 connection's queue.
  const client = createWorkerClient(worker.address);
  const print = async () => {
    const run = await runTask(client.tasks, { sessionId: neighbour, toolName: 'run.python', arguments: { code: 'print(1)' } });
    if (run.result?.outputs.stdout !== '1\n') throw new Error(`neighbour run.python failed: ${JSON.stringify(run.result)}`);
  };
  const out: NeighbourMeasure[] = [];
  try {
    for (const { attack, start } of ATTACKS.filter((a) => !only || a.attack.includes(only))) {
      const { sessionId: attacker } = await worker.sessions.createSession({ workspaceId: 'attacker', config: { limits: { maxDiskMb: 512 } } });
      await runTask(worker.tasks, { sessionId: attacker, toolName: 'run.python', arguments: { code: 'open("big.txt", "w").write("x" * (32 << 20))' } });
      await timed(3, print);
      const idleMs = await timed(30, print);
      const stop = new AbortController();
      const running = start(worker, attacker, stop.signal).catch((err: unknown) => process.stderr.write(`${attack}: ${String(err)}\n`));
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
