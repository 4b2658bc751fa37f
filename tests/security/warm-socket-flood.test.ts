// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, runTaskWithin, statusOf, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// The warm interpreter's output socket (/run/codegen/io.sock in the zygote's sandbox) is open to
// the session's code, and its zygote outlives tasks: it once accepted any number of connections
// and kept each open until it named a run, so a session parked connections in the worker until
// the worker ran out of file descriptors. Now it takes connections only for runs waiting for
// their streams, at most 64, each naming its run within 5 s, and sandboxes get 4096 descriptors.

const MARK = randomBytes(8).toString('hex');
let worker: RunningWorker;
let stderr = '';

const SITECUSTOMIZE = String.raw`
import os, socket, sys, threading, time
def _hold():
    time.sleep(0.5)
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            held = []
            try:
                while len(held) < 9000:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(1)  # a full backlog blocks connect(): that ends the flood too
                    s.connect("/run/codegen/io.sock")
                    held.append(s)
            except OSError:
                pass
            open("/workspace/.holding-%d" % os.getpid(), "w").write(str(len(held)))
            time.sleep(100000)
            os._exit(0)
if sys.argv[:1] == ["-c"]:
    try:
        os.close(os.open("/workspace/.flooded", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        threading.Thread(target=_hold, daemon=True).start()
    except FileExistsError:
        pass
`;

function fdsOf(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
  worker.process.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
});

after(async () => {
  await stopHard(worker, 3_000, ['CODEGEN_TEST_MARK', MARK]);
});

test("one session's zygote cannot exhaust the worker's file descriptors", async (t) => {
  const victim = (await worker.sessions.createSession({ workspaceId: 'victim' }, { deadline: 10_000 })).sessionId;
  const wrote = await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'fs.write', arguments: { path: 'keep.txt', contents: 'victim' } }, 10_000);
  assert.equal(wrote.code, Status.OK);

  const attacker = (
    await worker.sessions.createSession(
      { workspaceId: 'attacker', config: { env: { PYTHONPATH: '/workspace', CODEGEN_TEST_MARK: MARK } } },
      { deadline: 10_000 },
    )
  ).sessionId;
  await runTaskWithin(worker.tasks, { sessionId: attacker, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: SITECUSTOMIZE } }, 10_000);
  const first = await runTaskWithin(worker.tasks, { sessionId: attacker, toolName: 'run.python', arguments: { code: 'print("hello")' } }, 30_000);
  t.diagnostic(`attacker run.python: ${Status[first.code]} ${first.result?.outputs.stdout ?? ''}`);
  const before = fdsOf(worker.process.pid!);
  // Each of the three holders names a file, holding how many connections it made, once it can make no more.
  const holders = async () =>
    ((await callTool(worker.tasks, attacker, 'fs.list', { path: '.' })).result?.outputs.entries ?? '').split(',').filter((n) => n.startsWith('.holding-'));
  await waitFor(async () => (await holders()).length === 3, 30_000);
  const fds = fdsOf(worker.process.pid!);
  for (const name of await holders())
    t.diagnostic(`${name}: ${(await callTool(worker.tasks, attacker, 'fs.read', { path: name })).result?.outputs.contents} connections`);
  t.diagnostic(
    `worker fds before ${before}, with the connections held: ${fds}; worker alive: ${worker.process.exitCode === null && worker.process.signalCode === null}`,
  );

  const read = await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'fs.read', arguments: { path: 'keep.txt' } }, 10_000).catch((e: Error) => ({
    code: Status.UNAVAILABLE,
    error: e,
    result: undefined,
  }));
  t.diagnostic(`victim fs.read: ${Status[read.code]} ${(read.error as { details?: string } | undefined)?.details ?? read.error?.message ?? ''}`);
  const py = await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'run.python', arguments: { code: 'print(6*7)' } }, 15_000).catch((e: Error) => ({
    code: Status.UNAVAILABLE,
    error: e,
    result: undefined,
  }));
  t.diagnostic(
    `victim run.python: ${Status[py.code]} ${(py.error as { details?: string } | undefined)?.details ?? ''} ${JSON.stringify(py.result?.outputs ?? {}).slice(0, 300)}`,
  );
  const created = await statusOf(worker.sessions.createSession({ workspaceId: 'new' }, { deadline: 10_000 }));
  t.diagnostic(`CreateSession: ${Status[created]}`);
  t.diagnostic(`worker stderr tail: ${stderr.slice(-800)}`);

  assert.ok(worker.process.exitCode === null && worker.process.signalCode === null, `the worker died: ${stderr.slice(-800)}`);
  assert.equal(read.code, Status.OK, 'victim fs.read failed');
  assert.equal(py.result?.outputs.stdout, '42\n', 'victim run.python failed');
  assert.equal(created, Status.OK, 'CreateSession failed');
});
