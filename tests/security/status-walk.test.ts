// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, runTaskWithin, statusOf } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// GetSessionStatus (and GetCapacity, which coordinators poll) measures each session's disk use.
// Walking a workspace lstat()ed every entry of a directory at once, so a session with a few
// hundred thousand empty files queued that many requests on libuv's 4 threadpool threads ahead
// of every other session's file work (53 s for one fs.read). A capped workspace is now measured
// by statfs, and walks keep 32 requests in flight and stop at 100000 entries.

// More entries than a walk takes (100000).
const FILES = 150_000;
let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
});
after(async () => {
  await stopHard(worker, 3_000);
});

test("another session's fs.read is not starved by GetSessionStatus of a wide directory", async (t) => {
  const victim = (await worker.sessions.createSession({ workspaceId: 'victim' }, { deadline: 10_000 })).sessionId;
  await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'fs.write', arguments: { path: 'keep.txt', contents: 'x' } }, 10_000);
  const attacker = (await worker.sessions.createSession({ workspaceId: 'wide' }, { deadline: 10_000 })).sessionId;
  const made = await callTool(
    worker.tasks,
    attacker,
    'run.python',
    { code: `import os\nos.mkdir("w")\nfor i in range(${FILES}):\n    os.close(os.open(f"w/{i}", os.O_CREAT | os.O_WRONLY))\nprint("ok")` },
    300_000,
  );
  assert.equal(made.code, Status.OK, made.details);

  const read = async () => {
    const s = Date.now();
    const r = await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'fs.read', arguments: { path: 'keep.txt' } }, 60_000);
    assert.equal(r.code, Status.OK);
    return Date.now() - s;
  };
  const quiet = await read();
  // The victim reads at once, and again for as long as the walks run: the slowest read counts.
  let walking = true;
  const s0 = Date.now();
  const statuses = Promise.all(
    Array.from({ length: 4 }, () => statusOf(worker.sessions.getSessionStatus({ sessionId: attacker }, { deadline: 120_000 }))),
  ).finally(() => (walking = false));
  const reads: number[] = [];
  do reads.push(await read());
  while (walking);
  await statuses;
  const busy = Math.max(...reads);
  t.diagnostic(
    `victim fs.read: ${quiet} ms quiet, at most ${busy} ms over ${reads.length} reads while 4 GetSessionStatus walk ${FILES} entries (${Date.now() - s0} ms)`,
  );
  // A liveness bound, generous on a loaded machine: starved, one read took 53 s (300,000 files).
  assert.ok(busy < 10_000, `victim fs.read took ${busy} ms`);
});
