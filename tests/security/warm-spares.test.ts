import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { runTask } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The zygote announces each child it forks ahead of a call ({ev:"spare",pid}) and the worker
// moves that child into a task group of its own. The zygote is the session's code: it may
// announce spares without end, each costing the worker a cgroup and a migration. A flood breaks
// the protocol off (one announcement per call let go), and the session's calls still run.

let worker: RunningWorker;

// Every spare announcement is sent 50 times.
const FLOOD = String.raw`
import json, sys
if sys.argv[:1] == ["-c"]:
    _dumps = json.dumps
    def _flood(obj, *a, **k):
        text = _dumps(obj, *a, **k)
        if isinstance(obj, dict) and obj.get("ev") == "spare":
            return "\n".join([text] * 50)
        return text
    json.dumps = _flood
`;

before(async () => {
  worker = await startWorker();
});

after(async () => {
  await worker?.stop();
});

test('a zygote announcing spare children without end is stopped; the session still runs code', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'flood', config: { env: { PYTHONPATH: '/workspace' } } });
  const planted = await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: FLOOD } });
  assert.equal(planted.result?.status, TaskStatus.STATUS_SUCCESS);
  for (let i = 0; i < 3; i++) {
    const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'print("ran")' } });
    assert.equal(run.result?.outputs.stdout, 'ran\n', JSON.stringify(run.result));
  }
  assert.ok(
    worker.logs.some((l) => /more spare children than calls/.test(String(l.error))),
    'the flood was seen as a protocol violation',
  );
});
