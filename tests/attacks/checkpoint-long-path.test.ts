import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status, type ClientError } from 'nice-grpc';
import { startWorker, type RunningWorker } from '../helpers/worker.js';
import { runTool } from '../helpers/tasks.js';
import { differences, manifestOf } from './manifest.js';

// Promise A: every name Linux allows, deep paths included; what cannot be archived fails naming
// the path. A zip entry's name is at most 65,535 bytes; 256 levels of 255-byte names (within
// the 256 levels a checkpoint walks) make a path of 65,545 bytes.
let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => worker?.stop());

const DEEP = String.raw`
import os
fd = os.open('/workspace', os.O_RDONLY | os.O_DIRECTORY)
for i in range(255):
    n = '%03d' % i + 'd' * 252
    os.mkdir(n, dir_fd=fd)
    nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
f = os.open('f' * 255, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
os.write(f, b'deep')
`;

test('a path of 65,545 bytes is saved, or the checkpoint fails with a clear code naming it', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'long-path' });
  await runTool(worker.tasks, sessionId, 'run.python', { code: DEEP });
  const saved = await manifestOf(worker.tasks, sessionId);
  try {
    const { checkpointId } = await worker.sessions.checkpointSession({ sessionId, incremental: false });
    const restored = await worker.sessions.restoreSession({ checkpointId });
    assert.deepEqual(differences(saved, await manifestOf(worker.tasks, restored.sessionId)), []);
  } catch (err) {
    if (!(err as ClientError).details) throw err;
    const { code, details } = err as ClientError;
    const said = `${Status[code]}: ${details}`;
    assert.ok([Status.FAILED_PRECONDITION, Status.RESOURCE_EXHAUSTED].includes(code), said);
    assert.match(details, /000d/, said);
  }
});
