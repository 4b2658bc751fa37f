import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import unzipper from 'unzipper';
import { isAlive, runTaskWithin, statusOf, type TaskRequestInput, type TaskRun } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "Path check, then open, as root": the fs tools, GetSessionStatus and CheckpointSession resolve a
// workspace path (checking every symlink on the way) and only then open it, as root. Session code
// that swaps a real directory with a symlink to a host directory (renameat2 RENAME_EXCHANGE) in
// between redirects the worker's file work to the host. The racer lives in the session's warm
// interpreter (started by sitecustomize), so it also races calls made while no task runs.
//
// Whatever status each call ends with, nothing of the host directory may be read, listed,
// counted, archived or written.

const SECRET = `host-secret-${randomBytes(16).toString('hex')}`;
const BIG = 64 * 1024 * 1024;
const MARK = randomBytes(8).toString('hex');
const PHASE_MS = 2_500;
const CALL = { deadline: 10_000 };

let worker: RunningWorker | undefined;
let secretDir: string;
let racer: string;
let victim: string;

const SITECUSTOMIZE = String.raw`
import os

def _codegen_race():
    if os.environ.get("CODEGEN_RACER_STARTED"):
        return
    os.environ["CODEGEN_RACER_STARTED"] = "1"
    import ctypes, fcntl, threading
    # One racer per session, whichever Python gets here first (normally the warm interpreter).
    try:
        lock = os.open("/workspace/.racer.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    D, L = b"/workspace/d", b"/workspace/l"

    def race():
        if os.path.islink(D):  # a racer killed mid-swap left them exchanged
            renameat2(AT_FDCWD, D, AT_FDCWD, L, RENAME_EXCHANGE)
        os.makedirs(D, exist_ok=True)
        with open(b"/workspace/d/decoy.txt", "w") as f:
            f.write("decoy-contents")
        if os.path.lexists(L):
            os.unlink(L)
        os.symlink(os.environ["RACE_TARGET"], L)
        while True:
            renameat2(AT_FDCWD, D, AT_FDCWD, L, RENAME_EXCHANGE)

    threading.Thread(target=race, daemon=True, name="codegen-racer").start()

_codegen_race()
`;

/** Runs a task; one that has not answered within `ms` ends DEADLINE_EXCEEDED. */
const run = (request: TaskRequestInput, ms = 10_000): Promise<TaskRun> => runTaskWithin(worker!.tasks, request, ms);

function describe(r: TaskRun): string {
  return `${Status[r.code]} ${r.error?.details ?? ''} ${JSON.stringify(r.result?.outputs ?? {}).slice(0, 300)}`;
}

/** Runs `body` over and over in `parallel` loops for `ms`. */
async function hammer(ms: number, parallel: number, body: () => Promise<void>): Promise<void> {
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < end) await body();
    }),
  );
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function hostDirSnapshot(): { secret: string; secretMode: number; bigSize: number; bigMode: number } {
  return {
    secret: readFileSync(join(secretDir, 'secret.txt'), 'utf8'),
    secretMode: statSync(join(secretDir, 'secret.txt')).mode,
    bigSize: statSync(join(secretDir, 'big.bin')).size,
    bigMode: statSync(join(secretDir, 'big.bin')).mode,
  };
}

/** Files in the host directory that the test did not put there (they count as escapes, and are removed). */
function intruders(): string[] {
  const extra = readdirSync(secretDir).filter((n) => n !== 'secret.txt' && n !== 'big.bin');
  for (const name of extra) rmSync(join(secretDir, name), { recursive: true, force: true });
  return extra;
}

let original: ReturnType<typeof hostDirSnapshot>;
let workerStderr = '';

/** How the worker ended, if it did (with the end of its stderr). */
function workerDeath(): string {
  const child = worker!.process;
  if (child.exitCode === null && child.signalCode === null) return '';
  return `; the worker exited (code ${child.exitCode}, signal ${child.signalCode}): ${workerStderr.slice(-1500)}`;
}

before(async () => {
  secretDir = mkdtempSync(join(tmpdir(), 'fs-race-host-'));
  chmodSync(secretDir, 0o700);
  writeFileSync(join(secretDir, 'secret.txt'), SECRET, { mode: 0o600 });
  const fd = openSync(join(secretDir, 'big.bin'), 'w', 0o600);
  ftruncateSync(fd, BIG);
  closeSync(fd);
  original = hostDirSnapshot();

  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
  worker.process.stderr!.on('data', (d: Buffer) => (workerStderr = (workerStderr + d.toString()).slice(-20_000)));
  victim = (await worker.sessions.createSession({ workspaceId: 'victim', config: { env: { CODEGEN_TEST_MARK: MARK } } }, CALL)).sessionId;
  const wrote = await run({ sessionId: victim, toolName: 'fs.write', arguments: { path: 'keep.txt', contents: 'victim data' } });
  assert.equal(wrote.code, Status.OK, describe(wrote));

  racer = (
    await worker.sessions.createSession(
      { workspaceId: 'racer', config: { env: { PYTHONPATH: '/workspace', RACE_TARGET: secretDir, CODEGEN_TEST_MARK: MARK } } },
      CALL,
    )
  ).sessionId;
  const planted = await run({ sessionId: racer, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: SITECUSTOMIZE } });
  assert.equal(planted.code, Status.OK, describe(planted));
  // Starts the warm interpreter, which starts the racer.
  const started = await run({ sessionId: racer, toolName: 'run.python', arguments: { code: 'pass' } }, 30_000);
  assert.equal(started.code, Status.OK, describe(started));
  await assertSwapping();
});

/**
 * The racer is swapping: from inside, /workspace/d is sometimes the directory, sometimes the link.
 * (Up to three looks: a sample has once, rarely, ended killed with no output.)
 */
async function assertSwapping(): Promise<void> {
  const code = 'import os, time\ntime.sleep(0.2)\nlinks = sum(os.path.islink("/workspace/d") for _ in range(20000))\nprint(links, 20000 - links)';
  const looks: string[] = [];
  for (let attempt = 0; attempt < 3 && !workerDeath(); attempt++) {
    const sample = await run({ sessionId: racer, toolName: 'run.python', arguments: { code } }, 30_000);
    const [links = 0, dirs = 0] = (sample.result?.outputs.stdout ?? '').trim().split(' ').map(Number);
    if (links > 0 && dirs > 0) return;
    looks.push(describe(sample));
  }
  const warnings = worker!.logs.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => JSON.stringify(l));
  assert.fail(`the racer is not swapping: ${looks.join(' | ')} ${warnings.join(' ').slice(-1500)}${workerDeath()}`);
}

after(async () => {
  if (worker) await stopHard(worker, 5_000, ['CODEGEN_TEST_MARK', MARK]);
  if (secretDir) rmSync(secretDir, { recursive: true, force: true });
});

test('the fs tools, usage and checkpoints never reach a host directory swapped in by a racing session', async (t) => {
  const escapes = { read: 0, write: 0, list: 0, disk: 0, checkpoint: 0 };
  const statuses = {
    read: new Map<string, number>(),
    write: new Map<string, number>(),
    list: new Map<string, number>(),
    status: new Map<string, number>(),
    checkpoint: new Map<string, number>(),
  };
  const evidence = new Map<string, string[]>();
  const note = (what: string) => {
    const kind = what.split(' ')[0]!;
    const list = evidence.get(kind) ?? [];
    if (list.length < 2) list.push(what.slice(0, 300));
    evidence.set(kind, list);
  };

  // fs.read of d/secret.txt (and d/decoy.txt).
  await hammer(PHASE_MS, 3, async () => {
    for (const path of ['d/secret.txt', 'd/decoy.txt']) {
      const r = await run({ sessionId: racer, toolName: 'fs.read', arguments: { path } });
      count(statuses.read, Status[r.code]);
      if ((r.result?.outputs.contents ?? '').includes(SECRET)) {
        escapes.read++;
        note(`fs.read ${path}: ${describe(r)}`);
      }
    }
  });

  // fs.write of d/pwned.txt: must never land in (or leave anything in) the host directory.
  await hammer(PHASE_MS, 3, async () => {
    const r = await run({ sessionId: racer, toolName: 'fs.write', arguments: { path: 'd/pwned.txt', contents: 'pwned' } });
    count(statuses.write, Status[r.code]);
    const found = intruders();
    if (found.length > 0) {
      escapes.write++;
      note(`fs.write left ${found.join(',')} in the host directory (${describe(r)})`);
    }
  });

  // fs.list of d.
  await hammer(PHASE_MS, 3, async () => {
    const r = await run({ sessionId: racer, toolName: 'fs.list', arguments: { path: 'd' } });
    count(statuses.list, Status[r.code]);
    const names = r.result ? (JSON.parse(r.result.outputs.entries_json ?? '[]') as { name: string }[]).map((e) => e.name) : [];
    if (names.includes('secret.txt') || names.includes('big.bin')) {
      escapes.list++;
      note(`fs.list d: ${names.join(',')}`);
    }
  });

  // GetSessionStatus: the workspace's disk usage must not count the host's 64 MB file.
  await hammer(PHASE_MS, 3, async () => {
    try {
      const status = await worker!.sessions.getSessionStatus({ sessionId: racer }, CALL);
      count(statuses.status, 'OK');
      if ((status.usage?.diskBytes ?? 0) >= BIG) {
        escapes.disk++;
        note(`GetSessionStatus disk_bytes ${status.usage?.diskBytes}`);
      }
    } catch (err) {
      count(statuses.status, Status[(err as { code: Status }).code] ?? String(err));
    }
  });

  // CheckpointSession (full and incremental; one at a time: only a session with no task running
  // may be checkpointed), each archive checked at once (retention removes old ones).
  const end = Date.now() + PHASE_MS;
  for (let i = 0; (Date.now() < end || i < 6) && !workerDeath(); i++) {
    let checkpointId: string;
    try {
      ({ checkpointId } = await worker!.sessions.checkpointSession({ sessionId: racer, incremental: i % 2 === 1 }, { deadline: 20_000 }));
      count(statuses.checkpoint, 'OK');
    } catch (err) {
      count(statuses.checkpoint, Status[(err as { code: Status }).code] ?? String(err));
      continue;
    }
    const directory = await unzipper.Open.file(join(worker!.dataDir, 'checkpoints', `${checkpointId}.zip`));
    const leaked: string[] = [];
    for (const file of directory.files) {
      if (['secret.txt', 'big.bin'].includes(basename(file.path.replace(/\/$/, '')))) leaked.push(file.path);
      else if (file.uncompressedSize < 1024 * 1024 && (await file.buffer()).includes(SECRET)) leaked.push(`${file.path} (holds the secret)`);
    }
    if (leaked.length > 0) {
      escapes.checkpoint++;
      note(`CheckpointSession ${checkpointId} archived ${leaked.join(',')}`);
    }
  }

  // Still racing at the end (else zero escapes would prove little).
  if (!workerDeath()) await assertSwapping();

  const total = Object.values(escapes).reduce((a, b) => a + b, 0);
  const summary = (m: Map<string, number>) => JSON.stringify(Object.fromEntries(m));
  const report = `escapes ${JSON.stringify(escapes)}; statuses read ${summary(statuses.read)} write ${summary(statuses.write)} list ${summary(statuses.list)} status ${summary(statuses.status)} checkpoint ${summary(statuses.checkpoint)}`;
  t.diagnostic(report);
  assert.equal(total, 0, `${report}; e.g. ${[...evidence.values()].flat().join(' | ')}${workerDeath()}`);
  // Any status will do, but every call answers.
  const hung = Object.values(statuses).reduce((n, m) => n + (m.get('DEADLINE_EXCEEDED') ?? 0), 0);
  assert.equal(hung, 0, `${hung} calls did not answer in time; ${report}`);
});

test('destroying the racing session leaves the host directory as it was', async () => {
  const destroyed = await statusOf(worker!.sessions.destroySession({ sessionId: racer }, { deadline: 20_000 }));
  assert.deepEqual(intruders(), []);
  assert.deepEqual(hostDirSnapshot(), original);
  assert.deepEqual(readdirSync(secretDir).sort(), ['big.bin', 'secret.txt']);
  assert.equal(destroyed, Status.OK, `DestroySession: ${Status[destroyed]}${workerDeath()}`);
});

test('the other session and the worker are unharmed', async () => {
  const read = await run({ sessionId: victim, toolName: 'fs.read', arguments: { path: 'keep.txt' } });
  assert.equal(read.code, Status.OK, describe(read) + workerDeath());
  assert.equal(read.result?.outputs.contents, 'victim data');
  const py = await run({ sessionId: victim, toolName: 'run.python', arguments: { code: 'print(6*7)' } }, 30_000);
  assert.equal(py.code, Status.OK, describe(py));
  assert.equal(py.result?.outputs.stdout, '42\n');
  assert.equal(worker!.process.exitCode, null, 'the worker still runs');
  assert.ok(isAlive(worker!.process.pid!), 'the worker still runs');
});
