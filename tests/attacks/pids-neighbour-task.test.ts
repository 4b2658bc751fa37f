import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { startWorker, type RunningWorker } from '../helpers/worker.js';
import { callTool, describeCall, waitFor } from '../helpers/tasks.js';

// Promise B: a session at its process limit gets its own failure (killed_by=pids), never INTERNAL.
// One task holds every process the session may have; the session's next calls run beside it.
let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0', WORKER_MAX_PROCESSES: '32' } });
});
after(async () => worker?.stop());

const HOLD = String.raw`
import os, sys, time
kids = []
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        while not os.path.exists('/workspace/stop'): time.sleep(0.05)
        os._exit(0)
    kids.append(pid)
print('held', len(kids), flush=True)
while not os.path.exists('/workspace/stop'): time.sleep(0.05)
for k in kids: os.waitpid(k, 0)
`;

test("calls beside a task holding every process fail as the session's own, never INTERNAL", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'pids' });
  let seen = '';
  let stdout = '';
  const holding = (async () => {
    for await (const m of worker.tasks.executeTask({ sessionId, toolName: 'run.python', arguments: { code: HOLD } })) {
      if (m.payload?.$case === 'log' && m.payload.value.message.includes('held')) seen = m.payload.value.message;
      if (m.payload?.$case === 'result') stdout = m.payload.value.outputs.stdout ?? '';
    }
  })();
  await waitFor(() => seen !== '', 60_000);
  console.log(`holder: ${seen}`);
  const answers: string[] = [];
  for (const [tool, args] of [
    ['run.shell', { command: 'echo hi' }],
    ['run.python', { code: 'print(1)' }],
    ['run.shell', { command: 'for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait' }],
  ] as const) {
    const call = await callTool(worker.tasks, sessionId, tool, { ...args }, 60_000);
    answers.push(`${tool}: ${describeCall(call, 400)}`);
    assert.notEqual(call.code, Status.INTERNAL, describeCall(call));
    if (call.result?.status !== 1) assert.equal(call.result?.outputs.killed_by, 'pids', describeCall(call));
  }
  console.log(answers.join('\n'));
  await callTool(worker.tasks, sessionId, 'fs.write', { path: 'stop', contents: '1', encoding: 'utf-8' });
  await holding;
  assert.match(stdout, /held/);
});
