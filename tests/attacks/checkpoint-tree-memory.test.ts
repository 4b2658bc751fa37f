import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Status, type ClientError } from 'nice-grpc';
import { plantCheckpoint, zipOfEmptyFiles } from '../helpers/plantCheckpoint.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The worker's heap against session code (promise C: a session cannot crash the worker). A
// checkpoint holds a tree of every name of its session while it runs, and each session kept its
// last one (and a restored session its baseline too) for its next incremental checkpoint; a
// restarted worker read every session's back at once. Names are cheap for session code: ten
// sessions of half a million each, checkpointing side by side, took more heap than V8 gives the
// worker, and it died with every session in it. Checkpoints now hold a share of the heap first,
// sized by the files in use on the session's disk; but hard links are one file under many names,
// and sessions of one file and many links walked on shares of a few entries all at once.
// Here the worker gets a heap of 128 MB, and three sessions one file and 5,000 links each, of
// paths of 4 KB (a long path weighs on every copy a checkpoint holds of it): the same attack,
// scaled. Every checkpoint must be made, the worker must live, and no incremental checkpoint may
// lose track of its parent (a tree dropped from memory is read back from its file).
const FILES = 5_000;
const env = { NODE_OPTIONS: '--max-old-space-size=128', WORKER_SPARE_SESSIONS: '0', WORKER_LOG_LEVEL: 'info' };
/** 16 directories of 250-byte names: each name's path is over 4 KB. */
const DEEP = Array.from({ length: 16 }, (_, i) => String.fromCharCode(97 + i).repeat(250)).join('/');

const makeLinks = String.raw`
import os
os.makedirs('${DEEP}')
fd = os.open('${DEEP}', os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open('target', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
for i in range(${FILES}):
    os.link('target', '%05d' % i + 'c' * 190, src_dir_fd=fd, dst_dir_fd=fd)
print('made')
`;

const alive = (w: RunningWorker) => w.process.exitCode === null && w.process.signalCode === null;

test('sessions of many names checkpointing side by side do not take the worker down, nor lose their parents', { timeout: 240_000 }, async () => {
  const worker = await startWorker({ env });
  try {
    const sessions = await Promise.all([0, 1, 2].map(async () => (await worker.sessions.createSession({ workspaceId: 'many-names' })).sessionId));
    await Promise.all(sessions.map((id) => runTool(worker.tasks, id, 'run.python', { code: makeLinks })));
    await Promise.all(sessions.map((sessionId) => worker.sessions.checkpointSession({ sessionId })));
    assert.ok(alive(worker), 'the worker lives through three checkpoints of 5,001 long names at once');

    // Each changes one file; its incremental checkpoint lists that file alone (a full one would
    // list all 5,001: modified_files of a full checkpoint is measured from the session's start).
    const changed = (i: number) => ({ path: `${DEEP}/changed-${i}.txt`, contents: `session ${i}` });
    await Promise.all(sessions.map((id, i) => runTool(worker.tasks, id, 'fs.write', changed(i))));
    const incremental = await Promise.all(sessions.map((sessionId) => worker.sessions.checkpointSession({ sessionId, incremental: true })));
    incremental.forEach((c, i) => assert.deepEqual(c.metadata?.modifiedFiles, [DEEP, changed(i).path], `session ${i}`));

    // What was reported saved restores: every name, and the changed one as written.
    const restored = await worker.sessions.restoreSession({ checkpointId: incremental[1]!.checkpointId });
    const counted = await runTool(worker.tasks, restored.sessionId, 'run.python', {
      code: `import os\nprint(len(os.listdir('${DEEP}')), open('${DEEP}/changed-1.txt').read())`,
    });
    assert.equal(counted.stdout?.trim(), `${FILES + 2} session 1`);
    assert.ok(alive(worker), 'the worker lives');
  } finally {
    await worker.stop();
  }
});

// A restore reads every archive of a chain before it extracts any. Checkpoints now end a chain
// past 1,000,000 entries (or 128 MiB of paths) in all: an incremental becomes a full one. But an
// earlier release let a chain grow to 100 archives of 500,000 entries each, 50 million entries
// for a restore to hold. A chain past the bound, and past what the worker's heap could hold, is
// refused from the archives' end records alone, before any directory is read: these say 400,000
// entries each (their directories hold 2,000: read, they would be DATA_LOSS).
test("a chain naming more entries than the worker's heap holds is refused before it is read", { timeout: 120_000 }, async () => {
  const worker = await startWorker({ env });
  try {
    const dir = join(worker.dataDir, 'checkpoints');
    const archive = zipOfEmptyFiles(2_000, 400_000);
    for (let i = 0; i < 3; i++) plantCheckpoint(dir, `checkpoint-long-chain${i}`, archive, i ? `checkpoint-long-chain${i - 1}` : '');
    const before = (await worker.sessions.getCapacity({})).activeSessions;
    const refused = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-long-chain2' }).catch((err: unknown) => err as ClientError);
    assert.ok('details' in refused, 'restored');
    assert.equal(refused.code, Status.RESOURCE_EXHAUSTED, refused.details);
    assert.match(refused.details, /^checkpoint "checkpoint-long-chain2" and its parents name 1200000 entries in all, more than this worker can hold/);
    assert.ok(alive(worker));
    assert.equal((await worker.sessions.getCapacity({})).activeSessions, before, 'no session left');
    plantCheckpoint(dir, 'checkpoint-small-one', zipOfEmptyFiles(3));
    const restored = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-small-one' });
    const counted = await runTool(worker.tasks, restored.sessionId, 'run.python', { code: "import os\nprint(len(os.listdir('.')))" });
    assert.equal(counted.stdout?.trim(), '3', 'and restores what it can hold');
  } finally {
    await worker.stop();
  }
});
