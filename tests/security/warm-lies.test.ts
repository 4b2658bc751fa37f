import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTaskWithin, statusOf } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// A zygote that says `connected: true` in an exit event for a child that never connected its
// streams. The worker once waited for those streams with nothing racing the wait (the task's
// AbortSignal only fed `exit`, already resolved), so the call never ended: not at its timeout,
// not at CancelTask, not at DestroySession. Now the claim gets a moment to come true and then
// breaks the protocol; the call ends, and the session can be destroyed.

const MARK = randomBytes(8).toString('hex');
let worker: RunningWorker;

// The zygote's exit events claim the streams were connected; its children die where they
// would connect (after the worker's `go`, so the pid check passes).
const SITECUSTOMIZE = String.raw`
import json, os, socket, sys
if sys.argv[:1] == ["-c"]:
    _dumps = json.dumps
    def _lie(obj, *a, **k):
        if isinstance(obj, dict) and obj.get("ev") == "exit":
            obj = dict(obj, connected=True)
        return _dumps(obj, *a, **k)
    json.dumps = _lie
    def _die(self, addr):
        os._exit(3)
    socket.socket.connect = _die
`;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => {
  await stopHard(worker, 3_000, ['CODEGEN_TEST_MARK', MARK]);
});

test('a lying zygote cannot keep run.python past its timeout or DestroySession waiting', async (t) => {
  const sessionId = (
    await worker.sessions.createSession({ workspaceId: 'hang', config: { env: { PYTHONPATH: '/workspace', CODEGEN_TEST_MARK: MARK } } }, { deadline: 10_000 })
  ).sessionId;
  const planted = await runTaskWithin(
    worker.tasks,
    { sessionId, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: SITECUSTOMIZE } },
    10_000,
  );
  assert.equal(planted.code, Status.OK);

  const started = Date.now();
  // A 10 s task timeout; the client gives it 20 s to answer.
  const run = await runTaskWithin(
    worker.tasks,
    { sessionId, toolName: 'run.python', arguments: { code: 'print(1)' }, constraints: { timeoutSeconds: 10, maxMemoryMb: 0, maxCpuPercent: 0 } },
    20_000,
  );
  const took = Date.now() - started;
  t.diagnostic(`run.python with a 2 s timeout: ${Status[run.code]} after ${took} ms ${run.error?.details ?? ''}`);

  const destroy = await statusOf(worker.sessions.destroySession({ sessionId }, { deadline: 15_000 }));
  t.diagnostic(`DestroySession: ${Status[destroy]}`);
  const status = await statusOf(worker.sessions.getSessionStatus({ sessionId }, { deadline: 5_000 }));
  t.diagnostic(`GetSessionStatus after: ${Status[status]}`);

  assert.doesNotMatch(run.error?.details ?? '', /no answer within/, 'run.python had not ended after 20 s');
  assert.notEqual(run.code, Status.DEADLINE_EXCEEDED, `run.python ran into its 10 s timeout instead of ending when the lie was found (${took} ms)`);
  assert.equal(destroy, Status.OK, 'DestroySession did not complete within 15 s');
});
