// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { runTask, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// run.python calls are forked from a warm interpreter per session; each must still behave as a
// fresh `python -` process.
let worker: RunningWorker;
let sessionId: string;

before(async () => {
  worker = await startWorker({ env: { WORKER_LANGUAGES: 'python,node,go' } });
  ({ sessionId } = await worker.sessions.createSession({ workspaceId: 'warm' }));
});

after(async () => worker?.stop());

test('no state leaks from one call into the next', async () => {
  await runTool(worker.tasks, sessionId, 'run.python', { code: 'import sys, os, json\nsys.leak = 1\nos.environ["LEAK"] = "1"\njson.leak = 1\nx = 5' });
  const out = await runTool(worker.tasks, sessionId, 'run.python', {
    code: 'import sys, os, json\nprint(hasattr(sys, "leak"), "LEAK" in os.environ, hasattr(json, "leak"), "x" in globals(), __name__, sys.argv)',
  });
  assert.equal(out.stdout, "False False False False __main__ ['-']\n");
});

test('tracebacks, exit codes, atexit handlers, threads and stdin behave as in python -', async () => {
  const error = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'def f():\n    1/0\nf()' } });
  assert.equal(error.result?.exitCode, 1);
  assert.equal(
    error.result?.outputs.stderr,
    'Traceback (most recent call last):\n  File "<stdin>", line 3, in <module>\n  File "<stdin>", line 2, in f\nZeroDivisionError: division by zero\n',
  );
  const syntax = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'def (' } });
  assert.equal(syntax.result?.exitCode, 1);
  assert.match(syntax.result?.outputs.stderr ?? '', /SyntaxError/);
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'raise SystemExit(7)' } })).result?.exitCode, 7);
  assert.equal(
    (await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import sys; sys.exit("bye")' } })).result?.outputs.stderr,
    'bye\n',
  );
  const lifecycle = await runTool(worker.tasks, sessionId, 'run.python', {
    code: 'import atexit, threading, time, sys\natexit.register(lambda: print("atexit ran"))\nthreading.Thread(target=lambda: (time.sleep(0.2), print("thread ran"))).start()\nprint("stdin:", repr(sys.stdin.read()))',
  });
  assert.equal(lifecycle.stdout, "stdin: ''\nthread ran\natexit ran\n");
});

test('a call that kills the warm interpreter does not break the session', async () => {
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint("still here")' },
  });
  assert.ok(run.result !== undefined);
  for (let i = 0; i < 3; i++) assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print("ok")' })).stdout, 'ok\n');
});

test('concurrent calls in one session each get their own process and output', async () => {
  const runs = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: `import os, time\ntime.sleep(0.1)\nprint(${i}, os.getpid())` } }),
    ),
  );
  const pids = new Set<string>();
  runs.forEach((run, i) => {
    assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
    const [n, pid] = (run.result?.outputs.stdout ?? '').trim().split(' ');
    assert.equal(n, String(i));
    pids.add(pid!);
  });
  assert.equal(pids.size, 10);
});

test("while a call runs long, the next call's child is forked ahead and placed meanwhile, not only once it ends", async () => {
  await runTool(worker.tasks, sessionId, 'run.python', { code: 'pass' });
  /** The session's children waiting for their call, by pid, with their cgroups. */
  const waiting = () =>
    readdirSync('/proc')
      .filter((pid) => /^\d+$/.test(pid))
      .flatMap((pid) => {
        try {
          const groups = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'codegen-ahead' && groups.includes(`/${sessionId}/`) ? [{ pid, groups }] : [];
        } catch {
          return []; // gone meanwhile
        }
      });
  const before = new Set(waiting().map((w) => w.pid));
  const long = runTool(worker.tasks, sessionId, 'run.python', { code: 'import time\ntime.sleep(3)' });
  const deadline = Date.now() + 2000;
  while (!waiting().some((w) => !before.has(w.pid) && w.groups.includes('/task-'))) {
    assert.ok(Date.now() < deadline, 'no child forked ahead and placed while the call ran');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await long;
});

test("workspace modules named like the zygote's own (json, socket) shadow them for the code, as in python -, and the calls stay warm", async () => {
  const { sessionId: own } = await worker.sessions.createSession({ workspaceId: 'shadowing' });
  await runTool(worker.tasks, own, 'fs.write', { path: 'json.py', contents: 'SHADOW = "workspace json"\n' });
  await runTool(worker.tasks, own, 'fs.write', { path: 'socket.py', contents: 'raise SystemExit("workspace socket imported")\n' });
  for (let call = 0; call < 2; call++) {
    const out = await runTool(worker.tasks, own, 'run.python', {
      code: 'import json, os\nprint(json.SHADOW, open(f"/proc/{os.getppid()}/comm").read().strip().startswith("python"))',
    });
    assert.equal(out.stdout, 'workspace json True\n', 'forked from a python zygote (a cold call has bwrap as its parent)');
  }
  await worker.sessions.destroySession({ sessionId: own });
});

test('node and go sessions fork from a plain zygote too: run.node, run.go and run.shell pay no sandbox start', async () => {
  const parentOf = 'cat /proc/$PPID/comm';
  for (const [language, tool, args] of [
    ['node', 'run.node', { code: 'console.log(require("fs").readFileSync(`/proc/${process.ppid}/comm`, "utf8").trim())' }],
    ['node', 'run.shell', { command: parentOf }],
    ['go', 'run.shell', { command: parentOf }],
  ] as const) {
    const { sessionId: own } = await worker.sessions.createSession({ workspaceId: 'zygote', config: { language } });
    await runTool(worker.tasks, own, tool, args);
    assert.match((await runTool(worker.tasks, own, tool, args)).stdout!, /^python/, `${language} ${tool}`);
    await worker.sessions.destroySession({ sessionId: own });
  }
});
