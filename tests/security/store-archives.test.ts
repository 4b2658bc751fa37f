import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { plantCheckpoint, zipOfEmptyFiles } from '../helpers/plantCheckpoint.js';
import { runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The checkpoint store is less trusted than the worker (a tampered or corrupted bucket): an
// archive with millions of entries must be refused before its directory is parsed, parsing what
// is allowed must leave the event loop to others, and a restore must end, leaving nothing, when
// its client gives up.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
});
after(async () => {
  await worker?.stop();
});

const dir = () => join(worker.dataDir, 'checkpoints');
const sessionDirs = () => readdirSync(join(worker.dataDir, 'sessions')).filter((n) => !n.startsWith('.')).length;

test('an archive claiming millions of entries, or more than a checkpoint holds, is DATA_LOSS before anything is parsed', async () => {
  plantCheckpoint(dir(), 'checkpoint-millions1', zipOfEmptyFiles(3, 8_300_000));
  plantCheckpoint(dir(), 'checkpoint-toomany01', zipOfEmptyFiles(500_003));
  for (const [id, why] of [
    ['checkpoint-millions1', /8300000 entries, more than 500002/],
    ['checkpoint-toomany01', /500003 entries, more than 500002/],
  ] as const) {
    const err = (await worker.sessions.restoreSession({ checkpointId: id }).catch((e: unknown) => e)) as { code: Status; details: string };
    assert.equal(err.code, Status.DATA_LOSS, err.details);
    assert.match(err.details, why);
    assert.match(err.details, new RegExp(`checkpoint "${id}" cannot be restored`));
  }
});

test('a restore of a large archive leaves other sessions served, and ends with nothing left when its deadline passes', async () => {
  plantCheckpoint(dir(), 'checkpoint-large0001', zipOfEmptyFiles(400_000));
  const other = await worker.sessions.createSession({ workspaceId: 'neighbour' });
  const before = { capacity: (await worker.sessions.getCapacity({})).activeSessions, dirs: sessionDirs() };

  const restore = worker.sessions.restoreSession({ checkpointId: 'checkpoint-large0001' }, { deadline: new Date(Date.now() + 1500) }).catch((e: unknown) => e);
  // Served meanwhile: the directory is parsed in slices and entries made between other work.
  let echoes = 0;
  for (let done = false; !done;) {
    await runTool(worker.tasks, other.sessionId, 'echo', { message: 'still here' });
    echoes++;
    done = await Promise.race([restore.then(() => true), new Promise<boolean>((resolve) => setImmediate(() => resolve(false)))]);
  }
  const err = (await restore) as { code: Status };
  assert.equal(err.code, Status.DEADLINE_EXCEEDED);
  assert.ok(echoes > 1, `another session's calls were served during the restore (${echoes})`);
  // The worker notices the deadline wherever it is (fetching, parsing, extracting), stops, and
  // removes the session it was making: an old worker went on and left a session nobody asked for.
  await waitFor(async () => (await worker.sessions.getCapacity({})).activeSessions === before.capacity && sessionDirs() === before.dirs, 60_000);
  await worker.sessions.destroySession({ sessionId: other.sessionId });
});
