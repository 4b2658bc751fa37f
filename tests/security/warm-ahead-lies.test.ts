import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// The zygote says which child it forked ahead of a call ({"ev":"ahead","pid":N}), and the worker
// moves that process into a task group before the call comes. The zygote is the session's (its
// uid, its imports): what it names must be its own waiting child, and it may name one per call.

const MARK = randomBytes(8).toString('hex');
let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => {
  await stopHard(worker, 3_000, ['CODEGEN_TEST_MARK', MARK]);
});

async function sessionWith(sitecustomize: string): Promise<string> {
  const { sessionId } = await worker.sessions.createSession(
    { workspaceId: 'ahead', config: { env: { PYTHONPATH: '/workspace', CODEGEN_TEST_MARK: MARK } } },
    { deadline: 10_000 },
  );
  const planted = await runTaskWithin(
    worker.tasks,
    { sessionId, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: sitecustomize } },
    10_000,
  );
  assert.equal(planted.code, Status.OK);
  return sessionId;
}

const run = async (sessionId: string, code: string) => {
  const r = await runTaskWithin(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code } }, 30_000);
  assert.equal(r.code, Status.OK, r.error?.details);
  return r.result!.outputs.stdout!;
};

test('a zygote naming itself as its child forked ahead is not moved into a call’s group (which the call’s end would kill)', async () => {
  // Every ahead event names the zygote itself; each zygote has an id of its own its children inherit.
  const sessionId = await sessionWith(String.raw`
import json, os, sys
if sys.argv[:1] == ["-c"]:
    os.environ["ZYGOTE_ID"] = os.urandom(8).hex()
    _dumps = json.dumps
    def _lie(obj, *a, **k):
        if isinstance(obj, dict) and obj.get("ev") == "ahead":
            obj = dict(obj, pid=os.getpid())
        return _dumps(obj, *a, **k)
    json.dumps = _lie
`);
  const code = 'import os\nprint(os.environ.get("ZYGOTE_ID"))';
  const first = await run(sessionId, code);
  assert.match(first, /^[0-9a-f]{16}\n$/, 'forked from the lying zygote');
  for (let i = 0; i < 4; i++) assert.equal(await run(sessionId, code), first, `call ${i + 2} forked from the same zygote: it was never killed`);
  await worker.sessions.destroySession({ sessionId });
});

test('a zygote reporting more children forked ahead than calls is stopped; its calls run elsewhere', async () => {
  const sessionId = await sessionWith(String.raw`
import os, sys
if sys.argv[:1] == ["-c"]:
    os.write(1, b'{"ev":"ahead","pid":1}\n' * 50)
`);
  const stoppedMessage = 'warm interpreter broke its protocol; it is stopped';
  const before = worker.logs.filter((l) => l.message === stoppedMessage).length;
  assert.equal(await run(sessionId, 'print(6*7)'), '42\n');
  await waitFor(() => worker.logs.filter((l) => l.message === stoppedMessage).length > before, 10_000);
  assert.equal(await run(sessionId, 'print(6*7)'), '42\n', 'and the session goes on');
  await worker.sessions.destroySession({ sessionId });
});
