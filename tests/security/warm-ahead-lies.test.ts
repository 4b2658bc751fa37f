import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { processesMarked, runTaskWithin, waitFor } from '../helpers/tasks.js';
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

// Found by an attack (a helper session): every ahead event named the call's own running child
// (the zygote's `pids`), and the worker moved it out of its call's group into a reserved one.
const NAMES_RUNNING_CHILD = String.raw`
import json, sys
if sys.argv[:1] == ["-c"]:
    _dumps = json.dumps
    def _lie(obj, *a, **k):
        if isinstance(obj, dict) and obj.get("ev") == "ahead":
            running = list(getattr(sys.modules.get("__main__"), "pids", {}).values())
            if running:
                obj = dict(obj, pid=running[-1])
        return _dumps(obj, *a, **k)
    json.dumps = _lie
`;

test("a zygote naming a call's running child as forked ahead cannot move it out of the call's group", async () => {
  const sessionId = await sessionWith(NAMES_RUNNING_CHILD);
  await run(sessionId, 'print(1)'); // the lying zygote is up
  const code = [
    'import time',
    'before = open("/proc/self/cgroup").read()',
    'time.sleep(1.5)  # the worker reads the lying ahead event meanwhile',
    'print("moved" if open("/proc/self/cgroup").read() != before else "stayed", flush=True)',
    'x = b"x" * (300 * 1024 * 1024)',
    'print("allocated 300 MB", flush=True)',
  ].join('\n');
  const narrowed = await runTaskWithin(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code }, constraints: { maxMemoryMb: 100 } }, 30_000);
  assert.equal(narrowed.result?.outputs.stdout, 'stayed\n', 'never moved');
  assert.equal(narrowed.result?.outputs.killed_by, 'memory', "the call's 100 MB held");

  // What a call leaves running dies at its end, wherever the zygote says its child is.
  const left = await runTaskWithin(
    worker.tasks,
    {
      sessionId,
      toolName: 'run.python',
      arguments: { code: 'import subprocess, time\ntime.sleep(1.5)\nsubprocess.Popen(["sleep", "300"], start_new_session=True)\nprint("left")' },
    },
    30_000,
  );
  assert.equal(left.result?.outputs.stdout, 'left\n');
  const sleepers = processesMarked('CODEGEN_TEST_MARK', MARK).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').startsWith('sleep'));
  assert.deepEqual(sleepers, [], "the call's leftovers were killed at its end");
  await worker.sessions.destroySession({ sessionId });
});
