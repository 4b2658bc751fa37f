import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { Status } from 'nice-grpc';
import { SessionState, TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex } from './helpers/packageIndex.js';
import { runTask as runClientTask } from '../src/client/index.js';
import { bytesOf, textOf } from '../src/storage/byteNames.js';
import { scanTree } from '../src/storage/fileTree.js';
import { make, tree } from './helpers/generatedTrees.js';
import { callTool, runTask, statusOf, waitFor } from './helpers/tasks.js';
import { removeDataDir, startWorker, stopHard, type RunningWorker } from './helpers/worker.js';

// Nothing lost on restart: a worker killed (SIGKILL) or stopped (SIGTERM) and started again on
// the same data directory adopts its sessions: same ids, files, packages, limits, checkpoint
// chain; a task cut off by the stop is FAILURE. What it cannot adopt it moves aside. Run beside
// other files on a busy host, the SIGTERM restart read files written before the stop back empty
// (0 bytes, no blocks): the disk, unmounted lazily, had not written its data to its image when
// the next start mounted that image again. (Disk limits being disk, not RAM, is measured on the
// whole host: tests/durability.test.ts.)

const CALL = { deadline: 30_000 };

/** Starts a run.python that prints, then sleeps a minute; resolves once its code runs: a task for a stop to cut off. */
function startSleeper(worker: RunningWorker, sessionId: string, taskId: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const code = 'import time\nprint("started", flush=True)\ntime.sleep(60)';
    runClientTask(worker.tasks, { sessionId, taskId, toolName: 'run.python', arguments: { code } }, { onLog: () => resolve() }).then(
      () => reject(new Error(`${taskId} ended before the worker went`)),
      () => undefined,
    );
  });
}

/** SIGKILLs the worker; resolves once it is gone. */
async function killHard(worker: RunningWorker): Promise<void> {
  const exited = new Promise((resolve) => worker.process.once('exit', resolve));
  worker.process.kill('SIGKILL');
  await exited;
}

interface Prepared {
  plain: string;
  capped: string;
  cutTask: string;
  checkpointId: string;
}

/** Two sessions with work in them, one with a disk limit and a package, and a task left running. */
async function prepare(worker: RunningWorker): Promise<Prepared> {
  const plain = (
    await worker.sessions.createSession(
      {
        workspaceId: 'plain',
        userId: 'u1',
        config: { language: 'python', env: { GREETING: 'hi' }, limits: { maxMemoryMb: 128, maxCpuPercent: 0, maxDiskMb: 0, timeoutSeconds: 0 } },
      },
      CALL,
    )
  ).sessionId;
  const capped = (
    await worker.sessions.createSession(
      { workspaceId: 'capped', config: { language: 'python', env: {}, limits: { maxDiskMb: 32, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 } } },
      CALL,
    )
  ).sessionId;
  assert.equal((await callTool(worker.tasks, plain, 'fs.write', { path: 'notes/a.txt', contents: 'kept' })).code, Status.OK);
  assert.equal((await callTool(worker.tasks, capped, 'fs.write', { path: 'data.txt', contents: 'capped and kept' })).code, Status.OK);
  const install = await callTool(worker.tasks, capped, 'pkg.install', { requirements: 'tinydep==1.2.0' }, 60_000);
  assert.equal(install.code, Status.OK, install.text.slice(-500));
  await worker.sessions.checkpointSession({ sessionId: plain }, CALL);
  // Then an incremental one: its tree is kept as changes since the full one's (rememberedTree.ts).
  assert.equal((await callTool(worker.tasks, plain, 'fs.write', { path: 'notes/b.txt', contents: 'since the full one' })).code, Status.OK);
  const checkpointId = (await worker.sessions.checkpointSession({ sessionId: plain, incremental: true }, CALL)).checkpointId;
  // A task still running when the worker goes: its code has run, so it is on disk (a task that
  // starts a process is recorded before its code runs). Counted RUNNING, it may not be yet.
  const cutTask = 'task-cut-off';
  await startSleeper(worker, plain, cutTask);
  return { plain, capped, cutTask, checkpointId };
}

/** Everything prepare() made is there again, working, with its limits. */
async function assertAdopted(worker: RunningWorker, p: Prepared, cutOff: TaskStatus): Promise<void> {
  for (const sessionId of [p.plain, p.capped])
    assert.equal((await worker.sessions.getSessionStatus({ sessionId }, CALL)).state, SessionState.SESSION_STATE_READY, sessionId);
  const status = await worker.sessions.getSessionStatus({ sessionId: p.plain }, CALL);
  assert.deepEqual([status.workspaceId, status.userId, status.lastCheckpointId], ['plain', 'u1', p.checkpointId]);
  const kept = await callTool(worker.tasks, p.plain, 'fs.read', { path: 'notes/a.txt' });
  if (kept.result?.outputs.contents !== 'kept') {
    // In the shared phase, before each kept disk was synced at shutdown, this came back empty
    // after SIGTERM (tests/adoption.test.ts's header): what it finds is said.
    const listed = await callTool(worker.tasks, p.plain, 'run.shell', {
      command: 'ls -la --full-time notes; stat notes/a.txt; cat /proc/self/mountinfo | grep -i workspace',
    });
    const logs = worker.logs.filter((l) => l.level !== 'debug' || /adopt|mount|disk|journal/i.test(String(l.message)));
    assert.fail(`notes/a.txt read back ${JSON.stringify(kept.result?.outputs)}; ${listed.text.slice(-1500)}; logs ${JSON.stringify(logs).slice(-4000)}`);
  }
  assert.equal((await worker.tasks.getTaskStatus({ sessionId: p.plain, taskId: p.cutTask }, CALL)).status, cutOff);
  const env = await callTool(worker.tasks, p.plain, 'run.python', { code: 'import os\nprint(os.environ["GREETING"])' });
  assert.equal(env.result?.outputs.stdout, 'hi\n', 'the session env came back');
  // The package installed before: importable, the index long gone.
  const imported = await callTool(worker.tasks, p.capped, 'run.python', {
    code: 'import tinydep, pathlib\nprint(tinydep.__name__, pathlib.Path("data.txt").read_text())',
  });
  assert.equal(imported.result?.outputs.stdout, 'tinydep capped and kept\n', imported.text.slice(-400));
  // Limits hold: memory (128 MB) and disk (32 MB).
  const memory = await callTool(worker.tasks, p.plain, 'run.python', { code: 'x = bytearray(512 * 1024 * 1024)' });
  assert.equal(memory.result?.outputs.killed_by, 'memory');
  const disk = await callTool(worker.tasks, p.capped, 'run.python', { code: 'open("fill", "wb").write(b"x" * 64 * 1024 * 1024)' });
  assert.equal(disk.result?.outputs.killed_by, 'disk', disk.text.slice(-300));
  await callTool(worker.tasks, p.capped, 'run.python', { code: 'import os\nos.remove("fill")' });
  // The checkpoint chain goes on: an incremental checkpoint names what changed since.
  await callTool(worker.tasks, p.plain, 'fs.write', { path: 'later.txt', contents: 'after the restart' });
  const incremental = await worker.sessions.checkpointSession({ sessionId: p.plain, incremental: true }, CALL);
  assert.deepEqual(incremental.metadata?.modifiedFiles, ['later.txt']);
}

async function withIndex<T>(work: (url: string) => Promise<T>): Promise<T> {
  const index = await servePackageIndex([{ name: 'tinydep', version: '1.2.0', files: { 'tinydep.py': 'VALUE = 7\n' } }]);
  try {
    return await work(index.url);
  } finally {
    await index.close();
  }
}

for (const how of ['SIGKILL', 'SIGTERM'] as const) {
  test(`after ${how} and a restart on the same data directory, sessions come back whole; the cut-off task is FAILURE`, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), `codegen-durable-${how}-`));
    let first: RunningWorker | undefined;
    let second: RunningWorker | undefined;
    try {
      const prepared = await withIndex(async (url) => {
        first = await startWorker({ dataDir, env: { WORKER_PIP_INDEX_URL: url, WORKER_SPARE_SESSIONS: '1', WORKER_SHUTDOWN_GRACE_SECONDS: '1' } });
        return prepare(first);
      });
      const exited = new Promise((resolve) => first!.process.once('exit', resolve));
      first!.process.kill(how);
      await exited;
      second = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '1' } });
      const adopted = second.logs.find((l) => l.message === 'sessions of an earlier run adopted');
      assert.equal(adopted?.adopted, 2, JSON.stringify(adopted));
      // SIGTERM cancels the running task after the grace time (CANCELLED); SIGKILL cuts it off (FAILURE).
      await assertAdopted(second, prepared, how === 'SIGKILL' ? TaskStatus.STATUS_FAILURE : TaskStatus.STATUS_CANCELLED).catch((err: Error) => {
        const stopping = first!.logs.filter((l) => l.level !== 'debug' || /shut|stop|unmount|disk|dispos/i.test(String(l.message)));
        throw new Error(`${err.message}\nthe first worker's last logs: ${JSON.stringify(stopping.slice(-40)).slice(-4000)}`);
      });
      assert.equal((await second.sessions.getCapacity({}, CALL)).activeSessions, 2);
      // New sessions still come, and do not take an adopted session's uid.
      const fresh = (await second.sessions.createSession({ workspaceId: 'fresh' }, CALL)).sessionId;
      const uid = async (id: string) => (await callTool(second!.tasks, id, 'run.python', { code: 'import os\nprint(os.getuid())' })).result?.outputs.stdout;
      assert.notEqual(await uid(fresh), await uid(prepared.plain));
    } finally {
      await stopHard(first);
      await stopHard(second);
      await removeDataDir(dataDir);
    }
  });
}

test('after a SIGKILL right after calls, each keeps how it ended, and the one whose code had just started is FAILURE', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-killed-at-once-'));
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0' } });
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'killed-at-once' }, CALL);
    const ran = await runTask(worker.tasks, { sessionId, taskId: 'ran', toolName: 'run.python', arguments: { code: 'print(1)' } });
    const failed = await runTask(worker.tasks, { sessionId, taskId: 'failed', toolName: 'run.shell', arguments: { command: 'exit 3' } });
    const wrote = await runTask(worker.tasks, { sessionId, taskId: 'wrote', toolName: 'fs.write', arguments: { path: 'f', contents: 'x' } });
    assert.deepEqual(
      [ran, failed, wrote].map((r) => r.result?.status),
      [TaskStatus.STATUS_SUCCESS, TaskStatus.STATUS_FAILURE, TaskStatus.STATUS_SUCCESS],
    );
    // Killed within milliseconds of those ending and of the last one's code starting (task
    // bookkeeping is in the task journal alone: the record was written at the create).
    const cutStartedAfter = Date.now();
    await startSleeper(worker, sessionId, 'cut');
    await killHard(worker);
    worker = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0' } });
    // The idle clock goes on from the last task's start, not from the record's older time.
    const { lastActivityMs } = await worker.sessions.getSessionStatus({ sessionId }, CALL);
    assert.ok(lastActivityMs >= cutStartedAfter && lastActivityMs <= Date.now(), `last activity ${lastActivityMs} ≥ ${cutStartedAfter}`);
    const statuses: Record<string, TaskStatus> = {};
    for (const taskId of ['ran', 'failed', 'wrote', 'cut']) statuses[taskId] = (await worker.tasks.getTaskStatus({ sessionId, taskId }, CALL)).status;
    assert.deepEqual(statuses, {
      ran: TaskStatus.STATUS_SUCCESS,
      failed: TaskStatus.STATUS_FAILURE,
      wrote: TaskStatus.STATUS_SUCCESS,
      cut: TaskStatus.STATUS_FAILURE,
    });
    assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'f' } })).result?.outputs.contents, 'x');
  } finally {
    await stopHard(worker);
    await removeDataDir(dataDir);
  }
});

test('tasks cut off by a SIGKILL read FAILURE after the restart, listed as before, whatever finished after they started, however many', async () => {
  // helper-30's attack: the record landed with the task running, then quick tasks ended (a line
  // each in the journal). Applied after the record, they pushed the cut-off task out of a full
  // history (WORKER_TASK_HISTORY) and it read NOT_FOUND; so did a reused id's second run, and
  // (helper-31) tasks cut off past the history's bound. Their order came back changed.
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-cut-history-'));
  const env = { WORKER_SPARE_SESSIONS: '0', WORKER_TASK_HISTORY: '3' };
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker({ dataDir, env });
    const fresh = (await worker.sessions.createSession({ workspaceId: 'cut-fresh' }, CALL)).sessionId;
    const reused = (await worker.sessions.createSession({ workspaceId: 'cut-reused' }, CALL)).sessionId;
    const echo = async (sessionId: string, taskId: string) =>
      assert.equal((await runTask(worker!.tasks, { sessionId, taskId, toolName: 'echo', arguments: { message: taskId } })).code, Status.OK);
    for (const taskId of ['x', 'a', 'b']) await echo(reused, taskId);
    await startSleeper(worker, fresh, 'long');
    await startSleeper(worker, reused, 'x');
    // More tasks running than the history holds, started at once (some in the same millisecond).
    const many = (await worker.sessions.createSession({ workspaceId: 'cut-many' }, CALL)).sessionId;
    const manyIds = ['m0', 'm1', 'm2', 'm3', 'm4'];
    await Promise.all(manyIds.map((taskId) => startSleeper(worker!, many, taskId)));
    const manyBefore = (await worker.sessions.getSessionStatus({ sessionId: many }, CALL)).recentTasks;
    // Both records written with the task running in them: a background process's number is
    // written to its session's record before it starts (task bookkeeping alone goes to the journal).
    for (const sessionId of [fresh, reused])
      assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'run.shell', arguments: { command: 'true', background: 'true' } })).code, Status.OK);
    const record = (id: string) => readFileSync(join(dataDir, 'sessions', id, 'session.json'), 'utf8');
    assert.ok(record(fresh).includes('"long"') && (record(reused).match(/"taskId":"x"/g) ?? []).length === 2, 'the records list the running tasks');
    for (const taskId of ['q1', 'q2', 'q3']) await echo(fresh, taskId);
    await echo(reused, 'w');
    await killHard(worker);
    worker = await startWorker({ dataDir, env });
    assert.equal((await worker.tasks.getTaskStatus({ sessionId: fresh, taskId: 'long' }, CALL)).status, TaskStatus.STATUS_FAILURE);
    assert.equal((await worker.tasks.getTaskStatus({ sessionId: reused, taskId: 'x' }, CALL)).status, TaskStatus.STATUS_FAILURE);
    assert.equal((await worker.tasks.getTaskStatus({ sessionId: fresh, taskId: 'q3' }, CALL)).status, TaskStatus.STATUS_SUCCESS);
    for (const taskId of manyIds) assert.equal((await worker.tasks.getTaskStatus({ sessionId: many, taskId }, CALL)).status, TaskStatus.STATUS_FAILURE, taskId);
    const manyAdopted = await worker.sessions.getSessionStatus({ sessionId: many }, CALL);
    assert.deepEqual(manyAdopted.recentTasks, manyBefore, 'listed as before the restart');
    // helper-32: killed again with nothing run between, the next start lost the tasks cut off past
    // the history's bound (NOT_FOUND), and dated the last activity to the first restart.
    await killHard(worker);
    worker = await startWorker({ dataDir, env });
    for (const taskId of manyIds) assert.equal((await worker.tasks.getTaskStatus({ sessionId: many, taskId }, CALL)).status, TaskStatus.STATUS_FAILURE, taskId);
    const manyAgain = await worker.sessions.getSessionStatus({ sessionId: many }, CALL);
    assert.deepEqual(manyAgain.recentTasks, manyBefore, 'listed as before either restart');
    assert.equal(manyAgain.lastActivityMs, manyAdopted.lastActivityMs, 'a restart is no activity');
  } finally {
    await stopHard(worker);
    await removeDataDir(dataDir);
  }
});

test('a SIGTERM cancels the running task, and neither its cancel nor the restart counts as activity', async () => {
  // helper-33: the shutdown's cancel touched the session, and the next start dated its last
  // activity to the shutdown (idle reaping late by the grace).
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-term-activity-'));
  const env = { WORKER_SPARE_SESSIONS: '0', WORKER_SHUTDOWN_GRACE_SECONDS: '1' };
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker({ dataDir, env });
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'term-activity' }, CALL);
    await startSleeper(worker, sessionId, 'slept');
    const live = await worker.sessions.getSessionStatus({ sessionId }, CALL);
    await worker.stop();
    worker = await startWorker({ dataDir, env });
    assert.equal((await worker.tasks.getTaskStatus({ sessionId, taskId: 'slept' }, CALL)).status, TaskStatus.STATUS_CANCELLED);
    assert.equal((await worker.sessions.getSessionStatus({ sessionId }, CALL)).lastActivityMs, live.lastActivityMs);
  } finally {
    await stopHard(worker);
    await removeDataDir(dataDir);
  }
});

test('generated workspaces come back byte for byte, untouched, after a SIGTERM restart with their disks held elsewhere and after a SIGKILL', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-restart-roundtrip-'));
  const env = { WORKER_SPARE_SESSIONS: '0', WORKER_SHUTDOWN_GRACE_SECONDS: '1', WORKER_UID_BASE: '7000000' };
  const seed = Number(process.env.ROUNDTRIP_SEED ?? Date.now() % 2 ** 31);
  console.log(`# restart round trip: seed ${seed} (ROUNDTRIP_SEED=${seed} repeats it)`);
  const trees = fc.sample(tree.dir, { numRuns: 8, seed });
  let worker: RunningWorker | undefined;
  let lingering: ChildProcess | undefined;
  try {
    worker = await startWorker({ dataDir, env });
    const sessions: string[] = [];
    for (let i = 0; i < 2; i++) sessions.push((await worker.sessions.createSession({ workspaceId: `generated-${i}` }, CALL)).sessionId);
    const workspaceOf = (id: string) => join(dataDir, 'sessions', id, 'disk', 'workspace');
    // Made on the sessions' disks as their code would make them, last just before each stop:
    // names of any bytes, links anywhere, modes, sizes and times.
    trees.forEach((top, i) => make(Buffer.from(`${workspaceOf(sessions[i % 2]!)}/gen-${i}`), { ...top, mode: 0o755 }));
    /** Every entry as a scan sees it (ctime and inode too: a restart touches nothing), and each file's bytes' hash. */
    const state = async () =>
      Promise.all(
        sessions.map(async (id) => {
          const scanned = await scanTree(workspaceOf(id), 'workspace/');
          return [...scanned].map(([path, { racy: _, ...entry }]) => {
            const file = Buffer.concat([Buffer.from(`${workspaceOf(id)}/`), bytesOf(path.slice('workspace/'.length))]);
            const hash = entry.type === 'file' ? createHash('sha256').update(readFileSync(file)).digest('hex') : '';
            return JSON.stringify([textOf(path), path, entry, hash]);
          });
        }),
      );
    const before = await state();
    assert.ok(before.flat().length >= trees.length, 'the trees were made');
    const same = async (after: string) => {
      const now = await state();
      for (const [i, entries] of now.entries()) {
        const missing = before[i]!.filter((e) => !entries.includes(e));
        const extra = entries.filter((e) => !before[i]!.includes(e));
        assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `session ${i} after ${after} (seed ${seed})`);
      }
    };
    // Held by a mount namespace that outlives the stop, as a sandbox's torn down late is (tests/attacks/lingering-mount.test.ts).
    lingering = spawn('unshare', ['--mount', '--propagation', 'private', 'cat'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const pid = lingering.pid!;
    await waitFor(
      () => readlinkSync(`/proc/${pid}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt') && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'cat',
    );
    await worker.stop();
    // Each restart on another uid block (other workers took the last one meanwhile, as on a busy
    // host): the sessions' files are given the new uids by an idmapped mount of their disks.
    worker = await startWorker({ dataDir, env: { ...env, WORKER_UID_BASE: '7100000' } });
    await same('a SIGTERM restart');
    lingering.stdin!.end();
    await killHard(worker);
    // The disks are still mounted, idmapped for the uids the killed worker gave: given the new
    // ones, not moved aside.
    worker = await startWorker({ dataDir, env: { ...env, WORKER_UID_BASE: '7200000' } });
    await same('a SIGKILL restart');
    for (const sessionId of sessions) assert.equal((await callTool(worker.tasks, sessionId, 'run.shell', { command: 'ls gen-* > /dev/null' })).code, Status.OK);
  } finally {
    lingering?.stdin!.end();
    await stopHard(worker);
    await removeDataDir(dataDir);
  }
});

test('a session whose record or disk is damaged is moved aside, its disk neither mounted nor on a loop device; the others are adopted', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-quarantine-'));
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0' } });
    const good = (await worker.sessions.createSession({ workspaceId: 'good' }, CALL)).sessionId;
    const bad = (await worker.sessions.createSession({ workspaceId: 'bad' }, CALL)).sessionId;
    const broken = (await worker.sessions.createSession({ workspaceId: 'broken' }, CALL)).sessionId;
    await callTool(worker.tasks, good, 'fs.write', { path: 'f', contents: 'good' });
    await worker.stop();
    writeFileSync(join(dataDir, 'sessions', bad, 'session.json'), '{"version":1, "id": truncated');
    // Its filesystem's superblock (and group descriptors) overwritten: it mounts no more.
    const image = openSync(join(dataDir, 'sessions', broken, 'disk.img'), 'r+');
    writeSync(image, randomBytes(256 * 1024), 0, 256 * 1024, 0);
    closeSync(image);
    worker = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0' } });
    assert.equal((await callTool(worker.tasks, good, 'fs.read', { path: 'f' })).result?.outputs.contents, 'good');
    assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId: bad }, CALL)), Status.NOT_FOUND);
    assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId: broken }, CALL)), Status.NOT_FOUND);
    const aside = readdirSync(join(dataDir, 'quarantine')).sort((a, b) => (a.startsWith(bad) ? -1 : b.startsWith(bad) ? 1 : 0));
    assert.equal(aside.length, 2);
    assert.ok(aside[0]!.startsWith(bad) && aside[1]!.startsWith(broken), aside.join(', '));
    for (const name of aside) assert.ok(existsSync(join(dataDir, 'quarantine', name, 'disk.img')), 'kept for a person to look at');
    const reasons = worker.logs.filter((l) => l.message === 'session could not be adopted; moved aside').map((l) => String(l.reason));
    assert.ok(
      reasons.some((r) => /not valid JSON/.test(r)),
      reasons.join('; '),
    );
    assert.ok(
      reasons.some((r) => /mount .*disk\.img as ext4/.test(r)),
      reasons.join('; '),
    );
    const looped = readdirSync('/sys/block')
      .filter((name) => name.startsWith('loop'))
      .map((name) => (existsSync(`/sys/block/${name}/loop`) ? readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim() : ''))
      .filter((file) => file.includes(broken));
    assert.deepEqual(looped, [], 'no loop device holds its disk');
    assert.deepEqual(
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(join(dataDir, 'quarantine'))),
      [],
      'its disk is not mounted',
    );
  } finally {
    await stopHard(worker);
    await removeDataDir(dataDir);
  }
});

test('sessions asking for twelve different disk sizes leave at most 8 cached disk templates in scratch', async () => {
  const worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
  try {
    for (let mb = 5; mb < 17; mb++) {
      const config = { language: 'python', env: {}, limits: { maxDiskMb: mb, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 } };
      const { sessionId } = await worker.sessions.createSession({ workspaceId: `disk-${mb}`, config }, CALL);
      await worker.sessions.destroySession({ sessionId }, CALL);
    }
    const templates = readdirSync(join(worker.dataDir, 'scratch', 'disk-templates'));
    assert.ok(templates.length === 8, `templates: ${templates.join(', ')}`);
    assert.ok(templates.includes('ext4-16mb.img') && !templates.includes('ext4-5mb.img'), `the least recently used went: ${templates.join(', ')}`);
  } finally {
    await worker.stop();
  }
});
