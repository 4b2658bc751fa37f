import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// What CheckpointSession reports saved is saved, through a real worker: every name Linux allows,
// every link as a link, content changed behind size and mtime, and chains of any length.
// tests/checkpoint-roundtrip.test.ts generates trees against the archive code itself.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_CHECKPOINTS_PER_SESSION: '3' } });
});
after(async () => {
  await worker?.stop();
});

const py = async (sessionId: string, code: string) => (await runTool(worker.tasks, sessionId, 'run.python', { code })).stdout!;

/** The workspace as bytes: every path (hex of its bytes), its type, mode, size, sha256 or link target, mtime in µs. */
const DUMP = `
import os, stat, hashlib, json
out = []
for top, dirs, files in os.walk(b".", followlinks=False):
    for name in sorted(dirs + files):
        p = os.path.join(top, name)
        st = os.lstat(p)
        kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
        what = os.readlink(p).hex() if kind == "link" else hashlib.sha256(open(p, "rb").read()).hexdigest() if kind == "file" else ""
        out.append([p[2:].hex(), kind, oct(stat.S_IMODE(st.st_mode)), st.st_size if kind == "file" else 0, what, st.st_mtime_ns // 1000])
print(json.dumps(sorted(out)))
`;

async function restoreAndDump(checkpointId: string): Promise<{ sessionId: string; dump: string }> {
  const { sessionId } = await worker.sessions.restoreSession({ checkpointId });
  return { sessionId, dump: await py(sessionId, DUMP) };
}

test('names of any bytes (backslashes, not UTF-8, in files and directories) come back exactly', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'names' });
  await py(
    sessionId,
    [
      'import os',
      'open("a\\\\b.txt", "w").write("backslash")',
      'open(b"caf\\xe9.txt", "w").write("latin-1")',
      'os.makedirs(b"r\\xe9sum\\xe9/\\xff\\xfe dir")',
      'open(b"r\\xe9sum\\xe9/\\xff\\xfe dir/inner\\n.txt", "w").write("deep")',
      'open("\\\\", "w").write("just a backslash")',
    ].join('\n'),
  );
  const original = await py(sessionId, DUMP);
  assert.equal((JSON.parse(original) as unknown[]).length, 6);
  const checkpoint = await worker.sessions.checkpointSession({ sessionId });
  const restored = await restoreAndDump(checkpoint.checkpointId);
  assert.equal(restored.dump, original);
  for (const id of [sessionId, restored.sessionId]) await worker.sessions.destroySession({ sessionId: id });
});

test('every link is kept as a link, wherever it points; fs.read follows the ones inside as before', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'links' });
  await py(
    sessionId,
    [
      'import os',
      'os.makedirs("sub")',
      'open("sub/a.txt", "w").write("through the link")',
      'os.symlink("/workspace/sub/a.txt", "absolute-inside")',
      'os.symlink("sub/../sub/a.txt", "dotdot-after-a-name")',
      'os.symlink("/etc/passwd", "outside")',
      'os.symlink("../../../../etc", "climbing")',
      'os.symlink("nowhere", "dangling")',
      'os.symlink(b"\\xe9t\\xe9", b"not-utf8-target")',
    ].join('\n'),
  );
  const original = await py(sessionId, DUMP);
  const checkpoint = await worker.sessions.checkpointSession({ sessionId });
  const restored = await restoreAndDump(checkpoint.checkpointId);
  assert.equal(restored.dump, original);
  for (const link of ['absolute-inside', 'dotdot-after-a-name'])
    assert.equal((await runTool(worker.tasks, restored.sessionId, 'fs.read', { path: link })).contents, 'through the link');
  for (const id of [sessionId, restored.sessionId]) await worker.sessions.destroySession({ sessionId: id });
});

test('an incremental checkpoint sees content changed with size and mtime kept (cp -p, tar x, touch -d)', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'same-size' });
  // Written, then waited on until the file clock has moved past its ctime: the full checkpoint
  // sees it as settled, so only what the session cannot set back can tell the change.
  await py(sessionId, 'import os, time\nopen("f", "w").write("old bytes")\nwhile time.time_ns() < os.stat("f").st_ctime_ns + 200_000_000: time.sleep(0.01)');
  await worker.sessions.checkpointSession({ sessionId });
  await py(sessionId, 'import os\nst = os.stat("f")\nopen("f", "w").write("new bytes")\nos.utime("f", ns=(st.st_atime_ns, st.st_mtime_ns))');
  const incremental = await worker.sessions.checkpointSession({ sessionId, incremental: true });
  // Saved, though not listed as modified: its size and mtime say it is not, and a ctime alone
  // may be only a chown (storage/fileTree.ts).
  assert.deepEqual(incremental.metadata?.modifiedFiles, []);
  const { sessionId: restored } = await worker.sessions.restoreSession({ checkpointId: incremental.checkpointId });
  assert.equal(await py(restored, 'print(open("f").read())'), 'new bytes\n');
  for (const id of [sessionId, restored]) await worker.sessions.destroySession({ sessionId: id });
});

test('past 100 archives the next incremental checkpoint is a full one; retention keeps its setting plus the parents those need', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'long-chain' });
  const ids: string[] = [];
  const parents: string[] = [];
  const record = (id: string) => JSON.parse(readFileSync(join(worker.dataDir, 'checkpoints', `${id}.json`), 'utf8')) as { parentCheckpointId: string };
  for (let i = 0; i < 103; i++) {
    await py(sessionId, `open("n", "w").write("${i}")`);
    ids.push((await worker.sessions.checkpointSession({ sessionId, incremental: true })).checkpointId);
    parents.push(record(ids[i]!).parentCheckpointId);
  }
  assert.equal(parents[0], '', 'none before: full');
  assert.deepEqual(parents.slice(1, 100), ids.slice(0, 99), 'the 100th archive still extends the chain');
  assert.equal(parents[100], '', 'the 101st is a full checkpoint');
  assert.deepEqual(parents.slice(101), ids.slice(100, 102));
  // Three kept (WORKER_CHECKPOINTS_PER_SESSION) and the full one they start from: nothing else.
  const kept = readdirSync(join(worker.dataDir, 'checkpoints')).filter((f) => f.endsWith('.json') && ids.includes(f.slice(0, -5)));
  assert.deepEqual(
    kept.sort(),
    ids
      .slice(100)
      .map((id) => `${id}.json`)
      .sort(),
  );
  assert.equal(existsSync(join(worker.dataDir, 'checkpoints', `${ids[99]}.zip`)), false);
  const { sessionId: restored } = await worker.sessions.restoreSession({ checkpointId: ids[102] });
  assert.equal(await py(restored, 'print(open("n").read())'), '102\n');
  for (const id of [sessionId, restored]) await worker.sessions.destroySession({ sessionId: id });
});

test('a FIFO or socket in the workspace fails the checkpoint naming it, never a silent skip', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'fifo' });
  await py(sessionId, 'import os, socket\nos.mkfifo("pipe")\nsocket.socket(socket.AF_UNIX).bind("sock")');
  const err = (await worker.sessions.checkpointSession({ sessionId }).catch((e: unknown) => e)) as { code: Status; details: string };
  assert.equal(err.code, Status.FAILED_PRECONDITION);
  assert.match(err.details, /cannot checkpoint "workspace\/pipe": it is a FIFO/);
  await py(sessionId, 'import os\nos.remove("pipe")\nos.remove("sock")');
  await worker.sessions.checkpointSession({ sessionId });
  await worker.sessions.destroySession({ sessionId });
});

test('an archive whose checksum matches its record but whose entry fails its CRC is DATA_LOSS naming the checkpoint', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'crc' });
  await py(sessionId, 'import os\nopen("f", "wb").write(os.urandom(4096))'); // stored, not deflated: a flipped byte is a CRC failure
  const { checkpointId } = await worker.sessions.checkpointSession({ sessionId });
  const dir = join(worker.dataDir, 'checkpoints');
  const zip = readFileSync(join(dir, `${checkpointId}.zip`));
  const at = zip.indexOf(Buffer.from('workspace/f')) + 'workspace/f'.length + 100;
  zip[at]! ^= 0xff;
  writeFileSync(join(dir, `${checkpointId}.zip`), zip);
  const record = JSON.parse(readFileSync(join(dir, `${checkpointId}.json`), 'utf8')) as { checksumSha256: string };
  record.checksumSha256 = createHash('sha256').update(zip).digest('hex');
  writeFileSync(join(dir, `${checkpointId}.json`), JSON.stringify(record));
  const before = (await worker.sessions.getCapacity({})).activeSessions;
  const err = (await worker.sessions.restoreSession({ checkpointId }).catch((e: unknown) => e)) as { code: Status; details: string };
  assert.equal(err.code, Status.DATA_LOSS, err.details);
  assert.match(err.details, new RegExp(`checkpoint "${checkpointId}" cannot be restored: its archive is damaged .*fails its CRC`));
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, before, 'no session is left');
  await worker.sessions.destroySession({ sessionId });
});
