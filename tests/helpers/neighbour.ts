import assert from 'node:assert/strict';
import { createWorkerClient, type WorkerClient } from '../../src/client/index.js';
import { runTool } from './tasks.js';
import type { RunningWorker } from './worker.js';

/**
 * Issue 20's bystander: a session whose run.python print(1) is timed while another session
 * attacks, over a connection of its own (what is measured is the worker, not one HTTP/2
 * connection's queue). Ratios of medians measured in the same run, never times.
 */
export interface Neighbour {
  /** The median time of `runs` print(1) calls, one after another, in ms. */
  p50(runs: number): Promise<number>;
  close(): void;
}

export async function neighbourOf(worker: RunningWorker): Promise<Neighbour> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'neighbour' });
  const client: WorkerClient = createWorkerClient(worker.address);
  return {
    async p50(runs) {
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const start = performance.now();
        const out = await runTool(client.tasks, sessionId, 'run.python', { code: 'print(1)' });
        times.push(performance.now() - start);
        assert.equal(out.stdout, '1\n');
      }
      return [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)] ?? NaN;
    },
    close: () => client.close(),
  };
}
