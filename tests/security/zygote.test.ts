// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, test, type TestContext } from 'node:test';
import { Status } from 'nice-grpc';
import { isAlive, runTaskWithin, type TaskRequestInput, type TaskRun } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "The worker trusts its warm interpreter": each session's zygote (src/sandbox/warm/zygote.py) speaks
// JSON lines to the worker on its stdout, and the worker believes them: it parses them without a
// guard, buffers a line without bound, and moves whatever pid a `forked` event names into a task
// cgroup (the raw number when it is not among the zygote's children), which it later kills. But
// the zygote runs in the session's sandbox as the session's uid: session code controls it
// (PYTHONPATH=/workspace plus a sitecustomize.py runs inside it at its start; a task can take its
// parent's fd 1 with pidfd_getfd). Each variant runs in a fresh attacker session; afterwards the
// worker must still run, another session must not notice, and the attacker's session must still
// run code (cold, if need be).
//
// All variants share one worker. When a variant kills it (as they do on the current code), the
// next variant starts a new one, so that each variant shows its own failure.

const MARK = randomBytes(8).toString('hex');
const VICTIM_DATA = `victim data ${randomBytes(8).toString('hex')}`;

let worker: RunningWorker | undefined;
let victim: string;
let workerStderr = '';
let workersStarted = 0;
const spawned: ChildProcess[] = [];

function workerRuns(): boolean {
  return worker !== undefined && worker.process.exitCode === null && worker.process.signalCode === null;
}

function death(): string {
  if (!worker || workerRuns()) return '';
  const stderr = workerStderr.replace(/(.)\1{40,}/g, (run, c: string) => `${c}…(${run.length} times)`).slice(-1200);
  return `; the worker exited (code ${worker.process.exitCode}, signal ${worker.process.signalCode}): ${stderr}`;
}

/** Runs a task; one that has not answered within `ms` ends DEADLINE_EXCEEDED. */
const run = (request: TaskRequestInput, ms = 10_000): Promise<TaskRun> => runTaskWithin(worker!.tasks, request, ms);

function describe(r: TaskRun): string {
  const outputs = r.result
    ? { status: r.result.status, exitCode: r.result.exitCode, stdout: r.result.outputs.stdout?.slice(-300), stderr: r.result.outputs.stderr?.slice(-300) }
    : {};
  return `${Status[r.code]} ${r.error?.details ?? ''} ${JSON.stringify(outputs)}${death()}`;
}

/** The shared worker, with a victim session holding a file; a new one if the last variant killed it. */
async function ensureWorker(t: TestContext): Promise<RunningWorker> {
  if (workerRuns()) return worker!;
  if (worker) {
    t.diagnostic(`the previous variant killed the worker${death()}`);
    await stopHard(worker, 5_000, ['CODEGEN_TEST_MARK', MARK]);
  }
  workerStderr = '';
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
  workersStarted++;
  worker.process.stderr!.on('data', (d: Buffer) => (workerStderr = (workerStderr + d.toString()).slice(-20_000)));
  victim = (await worker.sessions.createSession({ workspaceId: 'victim', config: { env: { CODEGEN_TEST_MARK: MARK } } }, { deadline: 10_000 })).sessionId;
  const wrote = await run({ sessionId: victim, toolName: 'fs.write', arguments: { path: 'keep.txt', contents: VICTIM_DATA } });
  assert.equal(wrote.code, Status.OK, describe(wrote));
  const warm = await run({ sessionId: victim, toolName: 'run.python', arguments: { code: 'print(6*7)' } }, 30_000);
  assert.equal(warm.result?.outputs.stdout, '42\n', describe(warm));
  return worker;
}

after(async () => {
  for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (worker) await stopHard(worker, 5_000, ['CODEGEN_TEST_MARK', MARK]);
});

interface Attack {
  /** Written to the attacker's /workspace/sitecustomize.py before its first run.python. */
  sitecustomize?: string;
  /** The attacker's first run.python. */
  code?: string;
  env?: Record<string, string>;
}

/** Runs one variant in a fresh attacker session, then checks that nothing but that session noticed. */
async function attack(t: TestContext, variant: Attack): Promise<void> {
  const w = await ensureWorker(t);
  const attacker = (
    await w.sessions.createSession(
      { workspaceId: 'attacker', config: { env: { PYTHONPATH: '/workspace', CODEGEN_TEST_MARK: MARK, ...variant.env } } },
      { deadline: 10_000 },
    )
  ).sessionId;
  if (variant.sitecustomize) {
    const planted = await run({ sessionId: attacker, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: variant.sitecustomize } });
    assert.equal(planted.code, Status.OK, describe(planted));
  }

  // The attack: any outcome, but an answer within 30 s.
  const first = await run({ sessionId: attacker, toolName: 'run.python', arguments: { code: variant.code ?? 'print("first")' } }, 30_000);
  t.diagnostic(`attacker's first run.python: ${describe(first).slice(0, 1500)}`);
  await new Promise((r) => setTimeout(r, 500)); // whatever the attack set off has happened by now

  assert.ok(workerRuns(), `the worker must still run${death()}`);
  assert.notEqual(first.code, Status.DEADLINE_EXCEEDED, `the attacker's first run.python must answer within 30 s: ${describe(first)}`);

  const kept = await run({ sessionId: victim, toolName: 'fs.read', arguments: { path: 'keep.txt' } });
  assert.equal(kept.code, Status.OK, `victim fs.read: ${describe(kept)}`);
  assert.equal(kept.result?.outputs.contents, VICTIM_DATA);
  const other = await run({ sessionId: victim, toolName: 'run.python', arguments: { code: 'print(6*7)' } }, 30_000);
  assert.equal(other.code, Status.OK, `victim run.python: ${describe(other)}`);
  assert.equal(other.result?.outputs.stdout, '42\n', `victim run.python: ${describe(other)}`);

  // The attacker's session still runs code (a cold interpreter will do; sitecustomize may add noise).
  const again = await run({ sessionId: attacker, toolName: 'run.python', arguments: { code: 'print(6*7)' } }, 30_000);
  assert.equal(again.code, Status.OK, `attacker's second run.python: ${describe(again)}`);
  assert.match(again.result?.outputs.stdout ?? '', /42/, `attacker's second run.python: ${describe(again)}`);
  assert.ok(workerRuns(), `the worker must still run${death()}`);
}

test('a) a line that is not JSON', async (t) => {
  await attack(t, { sitecustomize: 'import os\nos.write(1, b"not json\\n")\n' });
});

test('b) 8 MB without a newline', async (t) => {
  // Only in the warm interpreter (argv ['-c']): a cold run keeps just the first MB of its stdout,
  // which would hide the "42" of the attacker's second call.
  await attack(t, {
    sitecustomize: 'import os, sys\nif sys.argv[:1] == ["-c"]:\n    chunk = b"x" * 65536\n    for _ in range(128):\n        os.write(1, chunk)\n',
  });
});

test('c) valid JSON of the wrong shape', async (t) => {
  await attack(t, { sitecustomize: 'import os\nos.write(1, b\'[]\\nnull\\n{"ev":"exit","id":"1"}\\n{"ev":"forked"}\\n\')\n' });
});

/**
 * Forged `forked` events naming FORGE_PID (a host pid, not one of the zygote's children), from
 * the session's first warm interpreter only (a restarted one behaves): in front of every genuine
 * `forked` event (the zygote's json.dumps is the module sitecustomize patches), so the forgery
 * arrives before the true answer to a pending run; and 0.3 s after start for ids 1..5.
 */
const FORGE = String.raw`
import json, os, sys, threading, time

def _first_zygote():
    if sys.argv[:1] != ["-c"]:
        return False
    try:
        os.close(os.open("/workspace/.forged", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False

if _first_zygote():
    _target = int(os.environ["FORGE_PID"])
    _dumps = json.dumps

    def _forged(n):
        return _dumps({"ev": "forked", "id": n, "pid": _target})

    def _patched(obj, *args, **kwargs):
        text = _dumps(obj, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("ev") == "forked":
            return _forged(obj["id"]) + "\n" + text
        return text

    json.dumps = _patched

    def _spray():
        time.sleep(0.3)
        for n in range(1, 6):
            os.write(1, (_forged(n) + "\n").encode())

    threading.Thread(target=_spray, daemon=True).start()
`;

test("d) forged forked events naming the worker's own pid", async (t) => {
  await ensureWorker(t);
  // Not pid 1: on the current code the worker would kill this machine's init.
  await attack(t, { sitecustomize: FORGE, env: { FORGE_PID: String(worker!.process.pid) } });
});

test('d) forged forked events naming an unrelated host process', async (t) => {
  const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
  spawned.push(sleeper);
  let failure: Error | undefined;
  try {
    await attack(t, { sitecustomize: FORGE, env: { FORGE_PID: String(sleeper.pid) } });
  } catch (err) {
    failure = err as Error;
  }
  const alive = isAlive(sleeper.pid!);
  sleeper.kill('SIGKILL');
  assert.ok(alive, `the host process ${sleeper.pid} named by the forged events was killed${failure ? `; also: ${failure.message}` : ''}`);
  if (failure) throw failure;
});

test("e) a task writes to its zygote's stdout through pidfd_getfd", async (t) => {
  await attack(t, {
    code: String.raw`
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ppid = os.getppid()
pidfd = libc.syscall(434, ppid, 0)  # pidfd_open
if pidfd < 0:
    print("pidfd_open of the zygote", ppid, "failed:", os.strerror(ctypes.get_errno()))
else:
    fd = libc.syscall(438, pidfd, 1, 0)  # pidfd_getfd: the zygote's fd 1, its channel to the worker
    if fd < 0:
        print("pidfd_getfd failed:", os.strerror(ctypes.get_errno()))
    else:
        print("wrote", os.write(fd, b"not json\n"), "bytes to the zygote's fd 1")
`,
  });
});

test('all variants ran in one worker', () => {
  assert.equal(workersStarted, 1, `the variants killed the worker ${workersStarted - 1} time(s)`);
});
