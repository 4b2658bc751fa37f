// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { runTask, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// What the worker holds for clients' fs requests and replies is bounded: 70 concurrent fs.read
// calls of a 60 MB file took it to 4.7 GB before (every reply queued unsent at once); here 48 of
// 32 MB (1.5 GB of replies), for time.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '2' } });
});
after(async () => {
  await worker?.stop();
});

/** The worker's peak resident memory so far, in MB (VmHWM). */
const peakMb = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${worker.process.pid}/status`, 'utf8'))![1]) / 1024;

test('48 concurrent fs.read calls of a 32 MB file, from two sessions, all answer whole without the worker holding them all', async () => {
  const sessions = await Promise.all([0, 1].map(async (i) => (await worker.sessions.createSession({ workspaceId: `reader-${i}` })).sessionId));
  for (const sessionId of sessions) await runTool(worker.tasks, sessionId, 'run.python', { code: 'open("big.txt", "w").write("x" * (32 << 20))' });
  const before = peakMb();
  let whole = 0;
  await Promise.all(
    Array.from({ length: 48 }, async (_, i) => {
      const run = await runTask(worker.tasks, { sessionId: sessions[i % 2], toolName: 'fs.read', arguments: { path: 'big.txt' } });
      // Checked and dropped at once: the test holds no more than the worker should.
      if (run.result?.outputs.contents?.length === 32 << 20 && /^x+$/.test(run.result.outputs.contents)) whole++;
    }),
  );
  assert.equal(whole, 48);
  const peak = peakMb();
  console.log(`# worker peak RSS ${Math.round(before)} MB before, ${Math.round(peak)} MB after 48 reads of 32 MB`);
  // Two sessions' shares (64 MB each) of payloads at once, each until its reply has left: far
  // below 48 replies queued at once (1.5 GB of text, and the bytes and encodings they came from).
  assert.ok(peak - before < 1000, `peak grew by ${Math.round(peak - before)} MB`);
});
