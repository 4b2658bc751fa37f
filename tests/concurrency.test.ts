// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SessionState, TaskStatus } from '../gen/codegen/v1/common.js';
import { runTask, runTool, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_SESSIONS: '20' } });
});

after(async () => worker?.stop());

test('20 sessions each running 5 run.python tasks at once all succeed, and GetCapacity counts them right throughout', async () => {
  const sessions = await Promise.all(Array.from({ length: 20 }, (_, i) => worker.sessions.createSession({ workspaceId: `ws-${i}` })));
  let capacity = await worker.sessions.getCapacity({});
  assert.deepEqual([capacity.totalSessions, capacity.activeSessions, capacity.availableSessions], [20, 20, 0]);
  assert.ok(capacity.sessions.every((s) => s.state === SessionState.SESSION_STATE_READY && s.activeTasks === 0));

  // Each task holds until its session's "go" file appears, so all 100 are running at once.
  const code = (s: number, t: number) =>
    `import os, time\nwhile not os.path.exists("go"):\n    time.sleep(0.02)\nprint("session ${s} task ${t}", open("go").read())`;
  const runs = sessions.flatMap(({ sessionId }, s) =>
    Array.from({ length: 5 }, (_, t) =>
      runTask(worker.tasks, { sessionId, taskId: `t${t}`, toolName: 'run.python', arguments: { code: code(s, t) }, constraints: { timeoutSeconds: 120 } }),
    ),
  );

  // Registered (activeTasks) comes a moment before running (processes to measure).
  await waitFor(async () => (await worker.sessions.getCapacity({})).sessions.every((s) => s.activeTasks === 5 && (s.usage?.memoryBytes ?? 0) > 0), 60_000);
  capacity = await worker.sessions.getCapacity({});
  assert.deepEqual([capacity.activeSessions, capacity.availableSessions], [20, 0]);
  assert.equal(capacity.sessions.length, 20);
  for (const s of capacity.sessions) {
    assert.equal(s.state, SessionState.SESSION_STATE_ACTIVE);
    assert.equal(s.activeTasks, 5);
    assert.ok((s.usage?.memoryBytes ?? 0) > 0, 'memory of running processes is measured');
  }
  const status = await worker.sessions.getSessionStatus({ sessionId: sessions[0]!.sessionId });
  assert.equal(status.activeTasks, 5);
  assert.equal(status.state, SessionState.SESSION_STATE_ACTIVE);
  assert.equal((await worker.tasks.getTaskStatus({ sessionId: sessions[0]!.sessionId, taskId: 't0' })).status, TaskStatus.STATUS_RUNNING);

  await Promise.all(sessions.map(({ sessionId }, s) => runTool(worker.tasks, sessionId, 'fs.write', { path: 'go', contents: `go-${s}` })));
  const results = await Promise.all(runs);
  results.forEach((run, i) => {
    const s = Math.floor(i / 5);
    assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS, `session ${s} task ${i % 5}: ${JSON.stringify(run.result)}`);
    assert.equal(run.result?.outputs.stdout, `session ${s} task ${i % 5} go-${s}\n`);
  });

  capacity = await worker.sessions.getCapacity({});
  assert.ok(capacity.sessions.every((s) => s.state === SessionState.SESSION_STATE_READY && s.activeTasks === 0));
  await Promise.all(sessions.map(({ sessionId }) => worker.sessions.destroySession({ sessionId })));
  capacity = await worker.sessions.getCapacity({});
  assert.deepEqual([capacity.activeSessions, capacity.availableSessions, capacity.sessions.length], [0, 20, 0]);
});
