import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { SessionState } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { plantCheckpoint } from './helpers/plantCheckpoint.js';
import { runTask, runTool, statusOf } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;
let index: PackageIndex;

before(async () => {
  index = await servePackageIndex([{ name: 'tinydep', version: '1.2.0', files: { 'tinydep/__init__.py': 'ANSWER = 42\n' } }]);
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url, WORKER_CHECKPOINTS_PER_SESSION: '3' } });
});

after(async () => {
  await worker?.stop();
  await index?.close();
});

const py = (sessionId: string, code: string, w = worker) => runTool(w.tasks, sessionId, 'run.python', { code });
const checkpointsDir = () => join(worker.dataDir, 'checkpoints');

const plant = (id: string, zip: Buffer) => plantCheckpoint(checkpointsDir(), id, zip);

function zipWith(entries: { name: string; data?: string; symlink?: string }[]): Buffer {
  const script = `
import io, json, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    for e in json.loads(sys.argv[1]):
        info = zipfile.ZipInfo(e["name"])
        if "symlink" in e:
            info.external_attr = (0o120777 << 16)
            z.writestr(info, e["symlink"])
        else:
            info.external_attr = (0o100644 << 16)
            z.writestr(info, e.get("data", "x"))
sys.stdout.buffer.write(buf.getvalue())`;
  return execFileSync('python3', ['-c', script, JSON.stringify(entries)]);
}

test('a full checkpoint keeps files, modes, links, empty dirs and packages; restore brings them back in a new READY session', async () => {
  const { sessionId } = await worker.sessions.createSession({
    workspaceId: 'ws-1',
    userId: 'user-1',
    config: { env: { GREETING: 'hello' }, limits: { timeoutSeconds: 60 } },
  });
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'tinydep==1.2.0' });
  await py(
    sessionId,
    'import os\nos.makedirs("src/empty")\nopen("src/run.sh", "w").write("#!/bin/sh\\necho hi\\n")\nos.chmod("src/run.sh", 0o750)\nos.symlink("src/run.sh", "link")\nopen("data.bin", "wb").write(bytes(range(256)) * 100)',
  );
  const checkpoint = await worker.sessions.checkpointSession({ sessionId });
  assert.match(checkpoint.checkpointId, /^checkpoint-/);
  assert.equal(checkpoint.metadata?.sessionId, sessionId);
  assert.ok(checkpoint.metadata.installedPackages.includes('tinydep==1.2.0'));
  assert.deepEqual(checkpoint.metadata.modifiedFiles, ['data.bin', 'link', 'src', 'src/empty', 'src/run.sh']);
  const archive = fileURLToPath(checkpoint.storageUrl);
  assert.equal(createHash('sha256').update(readFileSync(archive)).digest('hex'), checkpoint.metadata?.checksumSha256);
  assert.equal(checkpoint.sizeBytes, readFileSync(archive).length);
  assert.equal((await worker.sessions.getSessionStatus({ sessionId })).lastCheckpointId, checkpoint.checkpointId);

  await index.close(); // the restored session must not need the index
  const restored = await worker.sessions.restoreSession({ checkpointId: checkpoint.checkpointId });
  assert.notEqual(restored.sessionId, sessionId);
  assert.equal(restored.state, SessionState.SESSION_STATE_READY);
  assert.equal(restored.checkpointMetadata?.checksumSha256, checkpoint.metadata?.checksumSha256);
  const status = await worker.sessions.getSessionStatus({ sessionId: restored.sessionId });
  assert.deepEqual([status.workspaceId, status.userId, status.lastCheckpointId], ['ws-1', 'user-1', checkpoint.checkpointId]);
  const out = await py(
    restored.sessionId,
    'import os, stat, tinydep, hashlib\nprint(tinydep.ANSWER, os.environ["GREETING"])\nprint(oct(stat.S_IMODE(os.stat("src/run.sh").st_mode)), os.readlink("link"), os.path.isdir("src/empty"))\nprint(hashlib.sha256(open("data.bin","rb").read()).hexdigest())\nprint(open("link").read().strip())',
    worker,
  );
  const expectedHash = createHash('sha256')
    .update(Buffer.concat(Array.from({ length: 100 }, () => Buffer.from(Array.from({ length: 256 }, (_, i) => i)))))
    .digest('hex');
  assert.equal(out.stdout, `42 hello\n0o750 src/run.sh True\n${expectedHash}\n#!/bin/sh\necho hi\n`);
  // The restored session can write its files (they belong to its uid).
  await py(restored.sessionId, 'open("data.bin", "a").write("more")\nopen("src/new", "w").write("x")');
  index = await servePackageIndex([{ name: 'tinydep', version: '1.2.0', files: { 'tinydep/__init__.py': 'ANSWER = 42\n' } }]);
});

test('an incremental chain of three with a file deleted in the middle restores to the last state', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'chain' });
  await py(sessionId, 'open("a", "w").write("a1")\nopen("b", "w").write("b1")');
  const c1 = await worker.sessions.checkpointSession({ sessionId, incremental: true }); // none before: full
  await py(sessionId, 'import os, time\ntime.sleep(0.01)\nopen("a", "w").write("a2 longer")\nos.remove("b")\nopen("c", "w").write("c1")');
  const c2 = await worker.sessions.checkpointSession({ sessionId, incremental: true });
  assert.deepEqual(c2.metadata!.modifiedFiles, ['a', 'b', 'c']);
  await py(sessionId, 'open("d", "w").write("d1")');
  const c3 = await worker.sessions.checkpointSession({ sessionId, incremental: true });
  assert.deepEqual(c3.metadata!.modifiedFiles, ['d']);
  assert.ok(c3.sizeBytes < c1.sizeBytes + 2000, 'an incremental archive holds only what changed');
  const restored = await worker.sessions.restoreSession({ checkpointId: c3.checkpointId });
  assert.equal(
    (await py(restored.sessionId, 'import os\nprint(sorted(os.listdir(".")), open("a").read(), open("c").read())')).stdout,
    "['a', 'c', 'd'] a2 longer c1\n",
  );
  const middle = await worker.sessions.restoreSession({ checkpointId: c2.checkpointId });
  assert.equal((await py(middle.sessionId, 'import os\nprint(sorted(os.listdir(".")))')).stdout, "['a', 'c']\n");
  for (const id of [sessionId, restored.sessionId, middle.sessionId]) await worker.sessions.destroySession({ sessionId: id });
});

test('one flipped byte: restore fails INTERNAL "checkpoint corrupted" and creates nothing', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'flip' });
  await py(sessionId, 'open("f", "w").write("x" * 1000)');
  const { checkpointId, storageUrl } = await worker.sessions.checkpointSession({ sessionId });
  const path = fileURLToPath(storageUrl);
  const bytes = readFileSync(path);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  writeFileSync(path, bytes);
  const before = (await worker.sessions.getCapacity({})).activeSessions;
  const err = await worker.sessions.restoreSession({ checkpointId }).catch((e: unknown) => e as { code: Status; details: string });
  assert.equal((err as { code: Status }).code, Status.INTERNAL);
  assert.match((err as { details: string }).details, /checkpoint corrupted/);
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, before);
  await worker.sessions.destroySession({ sessionId });
});

test('a crafted malicious archive is refused INVALID_ARGUMENT with nothing extracted', async () => {
  const cases: [string, { name: string; data?: string; symlink?: string }[]][] = [
    ['checkpoint-dotdot0001', [{ name: 'workspace/ok.txt' }, { name: 'workspace/../../../../tmp/codegen-evil-dotdot' }]],
    ['checkpoint-absolute01', [{ name: 'workspace/ok.txt' }, { name: '/tmp/codegen-evil-absolute' }]],
    ['checkpoint-othertree1', [{ name: 'elsewhere/file' }]],
  ];
  const before = (await worker.sessions.getCapacity({})).activeSessions;
  for (const [id, entries] of cases) {
    plant(id, zipWith(entries));
    const err = await worker.sessions.restoreSession({ checkpointId: id }).catch((e: unknown) => e as { code: Status; details: string });
    assert.equal((err as { code: Status }).code, Status.INVALID_ARGUMENT, `${id}: ${(err as { details: string }).details}`);
  }
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, before, 'no session was made');
  assert.equal(existsSync('/tmp/codegen-evil-dotdot'), false);
  assert.equal(existsSync('/tmp/codegen-evil-absolute'), false);
});

test('an archive with links out of the session restores them as links; nothing is written or read through them', async () => {
  plant(
    'checkpoint-linksout1',
    zipWith([
      { name: 'workspace/escape', symlink: '../../../../../../../../tmp' },
      { name: 'workspace/passwd', symlink: '/etc/passwd' },
      { name: 'workspace/escape/codegen-evil-through-link', data: 'x' },
    ]),
  );
  const { sessionId } = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-linksout1' });
  assert.equal((await py(sessionId, 'import os\nprint(os.readlink("escape"), os.readlink("passwd"))')).stdout, '../../../../../../../../tmp /etc/passwd\n');
  assert.equal(existsSync('/tmp/codegen-evil-through-link'), false);
  await assert.rejects(runTool(worker.tasks, sessionId, 'fs.read', { path: 'passwd' }), /resolves outside the workspace/, 'fs.read follows no link out');
  await worker.sessions.destroySession({ sessionId });
});

test('states and preconditions: CHECKPOINTING while it runs; a second one, or one during a task, is FAILED_PRECONDITION', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'busy' });
  await py(sessionId, 'import os\nfor i in range(40): open(f"r{i}", "wb").write(os.urandom(1 << 20))');
  const first = worker.sessions.checkpointSession({ sessionId });
  const status = await worker.sessions.getSessionStatus({ sessionId });
  const second = await statusOf(worker.sessions.checkpointSession({ sessionId }));
  const task = await runTask(worker.tasks, { sessionId, toolName: 'echo', arguments: { message: 'x' } });
  await first;
  assert.equal(status.state, SessionState.SESSION_STATE_CHECKPOINTING);
  assert.equal(second, Status.FAILED_PRECONDITION);
  assert.equal(task.code, Status.FAILED_PRECONDITION);
  assert.equal((await worker.sessions.getSessionStatus({ sessionId })).state, SessionState.SESSION_STATE_READY);

  const sleeper = runTask(worker.tasks, { sessionId, taskId: 'sleeper', toolName: 'run.python', arguments: { code: 'import time; time.sleep(30)' } });
  while ((await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 0) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await statusOf(worker.sessions.checkpointSession({ sessionId })), Status.FAILED_PRECONDITION);
  await worker.tasks.cancelTask({ sessionId, taskId: 'sleeper' });
  await sleeper;
  await worker.sessions.destroySession({ sessionId });
});

test('unknown checkpoints are NOT_FOUND; DestroySession with create_checkpoint leaves a restorable checkpoint', async () => {
  assert.equal(await statusOf(worker.sessions.restoreSession({ checkpointId: 'checkpoint-doesnotexist' })), Status.NOT_FOUND);
  assert.equal(await statusOf(worker.sessions.restoreSession({ checkpointId: '../../etc/passwd' })), Status.NOT_FOUND);
  assert.equal(await statusOf(worker.sessions.checkpointSession({ sessionId: 'session-nope' })), Status.NOT_FOUND);
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'destroyed' });
  await py(sessionId, 'open("keep", "w").write("kept")');
  const { success, checkpointId } = await worker.sessions.destroySession({ sessionId, createCheckpoint: true });
  assert.equal(success, true);
  assert.match(checkpointId, /^checkpoint-/);
  assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId })), Status.NOT_FOUND);
  const restored = await worker.sessions.restoreSession({ checkpointId });
  assert.equal((await py(restored.sessionId, 'print(open("keep").read())')).stdout, 'kept\n');
  await worker.sessions.destroySession({ sessionId: restored.sessionId });
});

test('retention keeps the newest checkpoints of a session and the parents they need', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'retention' });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    await py(sessionId, `open("f${i}", "w").write("${i}")`);
    ids.push((await worker.sessions.checkpointSession({ sessionId, incremental: i > 0 })).checkpointId);
  }
  // Keep 3 (WORKER_CHECKPOINTS_PER_SESSION): ids[2..4], and their parents back to the full ids[0].
  for (const id of ids)
    assert.equal(
      await statusOf(worker.sessions.restoreSession({ checkpointId: id }).then((r) => worker.sessions.destroySession({ sessionId: r.sessionId }))),
      Status.OK,
      id,
    );
  for (let i = 0; i < 3; i++) {
    await py(sessionId, `open("g${i}", "w").write("${i}")`);
    ids.push((await worker.sessions.checkpointSession({ sessionId })).checkpointId);
  }
  // Three newer full checkpoints: the incremental chain is no longer needed.
  for (const id of ids.slice(0, 5)) assert.equal(await statusOf(worker.sessions.restoreSession({ checkpointId: id })), Status.NOT_FOUND, id);
  assert.equal(readdirSync(checkpointsDir()).filter((n) => n.endsWith('.json') && ids.includes(n.slice(0, -5))).length, 3);
  await worker.sessions.destroySession({ sessionId });
});

test('restore after the worker process was restarted', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'codegen-restart-'));
  try {
    const first = await startWorker({ dataDir });
    const { sessionId } = await first.sessions.createSession({ workspaceId: 'survivor' });
    await py(sessionId, 'open("note", "w").write("before restart")', first);
    const { checkpointId } = await first.sessions.checkpointSession({ sessionId });
    await first.stop();
    const second = await startWorker({ dataDir });
    try {
      const restored = await second.sessions.restoreSession({ checkpointId });
      assert.equal((await py(restored.sessionId, 'print(open("note").read())', second)).stdout, 'before restart\n');
    } finally {
      await second.stop();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('disk full while checkpointing: RESOURCE_EXHAUSTED and no partial checkpoint visible', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'codegen-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'codegen-test-full', dataDir]);
  try {
    // Sessions without disk images here: what fills up is the data directory itself.
    const small = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0', WORKER_DEFAULT_DISK_MB: '0' } });
    try {
      const { sessionId } = await small.sessions.createSession({ workspaceId: 'full' });
      await py(sessionId, 'import os\nopen("big", "wb").write(os.urandom(30 << 20))', small);
      const err = await small.sessions.checkpointSession({ sessionId }).catch((e: unknown) => e as { code: Status; details: string });
      assert.equal((err as { code: Status }).code, Status.RESOURCE_EXHAUSTED, (err as { details: string }).details);
      // Refused before writing (what the archive may take cannot be reserved), or by ENOSPC while writing.
      assert.match((err as { details: string }).details, /not enough disk for the checkpoint|disk full/);
      const left = readdirSync(join(dataDir, 'checkpoints'), { recursive: true }).map(String);
      assert.deepEqual(
        left.filter((n) => n.endsWith('.json') || n.endsWith('.zip') || n.includes('partial')),
        [],
      );
      assert.equal((await small.sessions.getSessionStatus({ sessionId })).state, SessionState.SESSION_STATE_READY);
    } finally {
      await small.stop();
    }
  } finally {
    execFileSync('umount', ['-l', dataDir]);
    await rm(dataDir, { recursive: true, force: true });
  }
});
