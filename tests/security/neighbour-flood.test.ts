// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFlood, type FloodKind, type FloodReport } from '../helpers/flood.js';
import { runTool } from '../helpers/tasks.js';
import { neighbourOf, type Neighbour } from '../helpers/neighbour.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// One session flooding the worker with large fs calls, far past its share of payload memory
// (16 calls of 32 MB at once against 64 MB a session), must not cost another session's run.python
// more than a small factor of its idle time. Before, a flood of fs.read made a neighbour's
// print(1) 25–30× slower: every 32 MB reply was decoded into a string, encoded back and copied
// into its gRPC frame on the event loop. The flood runs in a client process of its own (as
// another tenant's would, at the lowest CPU priority: its decoding is not the worker's cost), and
// its calls must still answer whole (slowly: paced, never stopped). Ratios of medians measured in
// this run, not times. Large replies (the read flood) and large requests (the write flood) are
// taken in and sent at a pace while other calls are served, at most 128 MB of requests at once
// (grpc/bulkIntake.ts, grpc/pacedIntake.ts): 0.76–1.32× (read) and 1.05–1.62× (write) over 16
// runs here, from 1.05–1.7× and 4–6.5× unpaced (receipt of 512 MB as 16 KiB HTTP/2 frames, page
// faults, the loop device's write-back took most of both cores).
// Issue 20: a neighbour within 2× its idle time. The read flood holds it; the write flood held it
// in 16 runs here (1.05–1.62×) but went 2.03× in one clean-clone CI run (the loop device's
// write-back and the kernel's page work are not paced), so its bound stays 3× until it holds
// every run: a test that fails now and then is a failing test.
const BOUND: Record<FloodKind, number> = { read: 2, write: 3 };
// Enough calls that one slow one moves neither median (idle p50s here range 11–16 ms over 20).
const RUNS = 40;

let worker: RunningWorker;
let neighbour: Neighbour;
before(async () => {
  worker = await startWorker({ env: { WORKER_LOG_LEVEL: 'info' } });
  neighbour = await neighbourOf(worker);
});
after(async () => {
  neighbour?.close();
  await worker?.stop();
});

for (const kind of ['read', 'write'] as FloodKind[]) {
  test(`a session's fs.${kind} flood past its payload bound leaves a neighbour's run.python within ${BOUND[kind]}× its idle p50`, async () => {
    const { sessionId: attacker } = await worker.sessions.createSession({ workspaceId: 'attacker', config: { limits: { maxDiskMb: 1024 } } });
    await runTool(worker.tasks, attacker, 'run.python', { code: 'open("big.txt", "w").write("x" * (32 << 20))' });
    await neighbour.p50(RUNS); // warm
    const idle = await neighbour.p50(RUNS);
    const flood = startFlood(worker.address, attacker, kind, { concurrency: 16, mb: 32 });
    let busy: number;
    let report: FloodReport;
    try {
      await flood.started;
      busy = await neighbour.p50(RUNS);
      await flood.answered(3, 60_000); // paced, never stopped
    } finally {
      report = await flood.stop();
    }
    console.log(
      `# fs.${kind} flood: neighbour print(1) p50 ${idle.toFixed(1)} ms idle, ${busy.toFixed(1)} ms under the flood (${(busy / idle).toFixed(2)}×); ${report.ok} flood calls answered`,
    );
    assert.deepEqual(report.problems, [], "the flooding session's own calls answer whole");
    assert.ok(busy <= BOUND[kind] * idle, `p50 ${busy.toFixed(1)} ms under the flood against ${idle.toFixed(1)} ms idle`);
    if (kind === 'write') {
      const read = await runTool(worker.tasks, attacker, 'run.python', {
        code: 'import hashlib\nprint(hashlib.sha256(open("flood-0.txt", "rb").read()).hexdigest())',
      });
      const { createHash } = await import('node:crypto');
      assert.equal(
        read.stdout!.trim(),
        createHash('sha256')
          .update('x'.repeat(32 << 20))
          .digest('hex'),
        'what the flood wrote is on disk whole',
      );
    }
    await worker.sessions.destroySession({ sessionId: attacker });
  });
}
