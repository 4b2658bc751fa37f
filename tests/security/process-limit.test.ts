import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { runTask, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// A session at its process limit is the session's own doing: its calls end as its own failures
// (fork refused, killed_by=pids), never as the worker's (INTERNAL).

const MAX_PROCESSES = 8;
let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_PROCESSES: String(MAX_PROCESSES), WORKER_MAX_SESSIONS: '2', WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => worker?.stop());

// Each call holds processes of its own while it runs, so a few at once fill the session's limit.
const CALLS: { toolName: string; arguments: Record<string, string> }[] = [
  { toolName: 'run.python', arguments: { code: 'print(1)' } },
  { toolName: 'run.shell', arguments: { command: 'sleep 0.2 & sleep 0.2 & wait; echo done' } },
  { toolName: 'run.python', arguments: { code: 'import subprocess\nsubprocess.run(["sleep", "0.2"])\nprint("ran")' } },
];

test(`${MAX_PROCESSES} processes and 200 concurrent calls in one session: each call ends as its own outcome, none INTERNAL`, async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'pids' });
  try {
    const runs = await Promise.all(Array.from({ length: 200 }, (_, i) => runTask(worker.tasks, { sessionId, ...CALLS[i % CALLS.length]! })));
    // Each call ran, or failed as its own: refused a process, killed_by=pids (never INTERNAL, never a
    // call killed because another was refused).
    const otherwise = runs.filter(
      (r) =>
        r.code !== Status.OK ||
        (r.result?.status !== TaskStatus.STATUS_SUCCESS && !(r.result?.status === TaskStatus.STATUS_FAILURE && r.result.outputs.killed_by === 'pids')),
    );
    assert.deepEqual(
      otherwise.map((r) => `${Status[r.code]} ${r.error?.details ?? ''} ${JSON.stringify(r.result?.outputs)}`),
      [],
      'every call succeeded or was refused a process',
    );
    assert.ok(
      runs.some((r) => r.result?.outputs.killed_by === 'pids'),
      'the limit was reached',
    );
    // Whether any call of the burst found room depends on how fast refused calls go by while
    // the others hold the processes; once the burst is over, a call finds room and runs.
    assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(6 * 7)' })).stdout, '42\n');
  } finally {
    await worker.sessions.destroySession({ sessionId });
  }
});
