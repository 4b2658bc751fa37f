import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { mountsBelow } from '../../src/sandbox/confine/diskImage.js';
import { makeDataDisk } from '../helpers/dataDisk.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Found by an attack on ForkSession (a helper session with fresh eyes); the first two failed on
// the code before their fix, the third held and stays as a guard.

const sh = async (worker: RunningWorker, id: string, command: string) => (await runTool(worker.tasks, id, 'run.shell', { command })).stdout ?? '';

test('a SIGTERM during a fork of 8 leaves no session disk mounted, and the next start adopts every fork, idmapped', async () => {
  const disk = makeDataDisk('codegen-fork-stop-', '8G', 'xfs');
  const env = { WORKER_SPARE_SESSIONS: '0', WORKER_MAX_SESSIONS: '12' };
  let worker: RunningWorker | undefined = await startWorker({ dataDir: disk.dataDir, env });
  try {
    const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-stop' });
    await sh(worker, source, 'echo kept > kept.txt');
    const forking = worker.sessions.forkSession({ sessionId: source, count: 8, workspaceId: '' }).catch((err: Error) => err);
    // The forks hold their slots (CREATING) as soon as the call is in: stop then.
    for (let i = 0; i < 2000 && (await worker.sessions.getCapacity({})).activeSessions <= 1; i++) await new Promise((r) => setImmediate(r));
    const exited = new Promise((resolve) => worker!.process.once('exit', resolve));
    worker.process.kill('SIGTERM');
    await exited;
    await forking;
    assert.deepEqual(
      (await mountsBelow(disk.dataDir)).filter((p) => p.includes('/sessions/')),
      [],
      'a stopped worker leaves no session disk mounted',
    );

    worker = await startWorker({ dataDir: disk.dataDir, env });
    assert.deepEqual(
      worker.logs.filter((l) => /quarantin|moved aside|idmapped mounts are not available/.test(String(l.message))),
      [],
      'no fork is half made, and idmaps still work',
    );
    const adopted = (await worker.sessions.getCapacity({})).sessions.map((s) => s.sessionId);
    for (const id of adopted) assert.equal(await sh(worker, id, 'cat kept.txt; find . ! -user "$(id -u)" | wc -l'), 'kept\n0\n', id);
  } finally {
    await worker?.stop();
    disk.remove();
  }
});

test("a fork's incremental checkpoint stays restorable whatever its source checkpoints after (retention keeps what others build on)", async () => {
  const disk = makeDataDisk('codegen-fork-lineage-', '4G', 'xfs');
  const worker = await startWorker({ dataDir: disk.dataDir, env: { WORKER_SPARE_SESSIONS: '0', WORKER_CHECKPOINTS_PER_SESSION: '2' } });
  try {
    const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-lineage-attack' });
    await sh(worker, source, 'echo base > base.txt');
    await worker.sessions.checkpointSession({ sessionId: source, incremental: false });
    const [copy] = (await worker.sessions.forkSession({ sessionId: source, count: 1, workspaceId: '' })).sessionIds;
    await sh(worker, copy!, 'echo mine > mine.txt');
    const mine = await worker.sessions.checkpointSession({ sessionId: copy!, incremental: true });
    for (let i = 0; i < 3; i++) {
      await sh(worker, source, `echo ${i} > s${i}.txt`);
      await worker.sessions.checkpointSession({ sessionId: source, incremental: false });
    }
    const restored = await worker.sessions.restoreSession({ checkpointId: mine.checkpointId });
    assert.equal(await sh(worker, restored.sessionId, 'cat base.txt mine.txt'), 'base\nmine\n');
  } finally {
    await worker.stop();
    disk.remove();
  }
});

test('forks reserve their whole disks: past the free space they are refused, holding no slot, and made ones keep counting', async () => {
  const disk = makeDataDisk('codegen-fork-budget-', '3G', 'xfs');
  const worker = await startWorker({
    dataDir: disk.dataDir,
    env: { WORKER_SPARE_SESSIONS: '0', WORKER_DISK_OVERCOMMIT: '1', WORKER_CACHE_DISK_MB: '0', WORKER_MAX_DISK_MB: '4096', WORKER_MAX_SESSIONS: '20' },
  });
  try {
    const limits = { maxDiskMb: 700, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 };
    const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-budget', config: { limits } });
    const code = (p: Promise<unknown>) =>
      p.then(
        () => Status.OK,
        (e: { code: Status }) => e.code,
      );
    assert.equal(await code(worker.sessions.forkSession({ sessionId: source, count: 4, workspaceId: '' })), Status.RESOURCE_EXHAUSTED);
    assert.equal((await worker.sessions.getCapacity({})).activeSessions, 1);
    let made = 0;
    while (made < 4 && (await code(worker.sessions.forkSession({ sessionId: source, count: 1, workspaceId: '' }))) === Status.OK) made++;
    assert.ok(made <= 2, `${made} forks of 700 MB on 3 GB with a 700 MB source`);
    assert.equal(await code(worker.sessions.createSession({ workspaceId: 'ws-budget', config: { limits } })), Status.RESOURCE_EXHAUSTED);
  } finally {
    await worker.stop();
    disk.remove();
  }
});
