import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import S3rver from 's3rver';
import { runTool } from './helpers/tasks.js';
import { startWorker } from './helpers/worker.js';

// A real S3-protocol server on loopback stands for the fleet's shared object store.
let s3: S3rver;
let s3Dir: string;
let endpoint: string;

before(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), 'codegen-s3-'));
  s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: s3Dir, configureBuckets: [{ name: 'fleet', configs: [] }] });
  const { port } = await s3.run();
  endpoint = `http://127.0.0.1:${port}`;
});

after(async () => {
  await s3?.close();
  await rm(s3Dir, { recursive: true, force: true });
});

test('a session checkpointed on one worker is restored on another through the S3 store', async () => {
  const env = {
    WORKER_CHECKPOINT_STORE: 's3://fleet/checkpoints',
    WORKER_S3_ENDPOINT: endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  };
  const first = await startWorker({ env });
  const second = await startWorker({ env });
  try {
    const { sessionId } = await first.sessions.createSession({ workspaceId: 'shared', userId: 'u' });
    await runTool(first.tasks, sessionId, 'run.python', { code: 'import os\nos.makedirs("pkg")\nopen("pkg/data.txt", "w").write("from worker one")' });
    const full = await first.sessions.checkpointSession({ sessionId });
    assert.match(full.storageUrl, /^s3:\/\/fleet\/checkpoints\/checkpoint-.*\.zip$/);
    await runTool(first.tasks, sessionId, 'run.python', { code: 'open("later.txt", "w").write("incremental")' });
    const incremental = await first.sessions.checkpointSession({ sessionId, incremental: true });
    assert.deepEqual(incremental.metadata?.modifiedFiles, ['later.txt']);
    await first.sessions.destroySession({ sessionId });

    const restored = await second.sessions.restoreSession({ checkpointId: incremental.checkpointId });
    const out = await runTool(second.tasks, restored.sessionId, 'run.python', { code: 'print(open("pkg/data.txt").read(), open("later.txt").read())' });
    assert.equal(out.stdout, 'from worker one incremental\n');
    const status = await second.sessions.getSessionStatus({ sessionId: restored.sessionId });
    assert.deepEqual([status.workspaceId, status.userId], ['shared', 'u']);
  } finally {
    await first.stop();
    await second.stop();
  }
});
