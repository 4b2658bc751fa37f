import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status, type ClientError } from 'nice-grpc';
import { startWorker, type RunningWorker } from '../helpers/worker.js';
import { runTool } from '../helpers/tasks.js';
import { plantCheckpoint, zipOfEmptyFiles } from '../helpers/plantCheckpoint.js';
import { join } from 'node:path';

// Promise A (what we report saved is saved) and the worker's own CPU and memory. A checkpoint
// holds every entry's full path: keys of the worker's Maps while it is made, and its archive's
// directory (which a restore reads whole, within a bound), and its reply lists them. Session code
// names them: deep directories make a few thousand empty files tens or hundreds of MB of paths.
// - Paths past 16,383 bytes: V8 hashes such strings by length alone, so a deep directory's files
//   all collide in every Map; 4,200 files of 64 KB paths took 280 s of the worker's CPU, and the
//   checkpoint was saved while its reply could not be sent.
// - Paths under that, but 16 KB each: 64 MB of them for 4,300 files.
// Each must be refused when the checkpoint is made, with a clear code.
let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => worker?.stop());

/**
 * Python making `levels` nested directories of 255-byte names under /workspace (`000ddd…`, or
 * 255 bytes 0xff: not UTF-8, each byte U+FFFD in modified_files), then `files` empty files in the deepest.
 */
const deepFiles = (levels: number, files: number, notUtf8 = false) => String.raw`
import os
fd = os.open('/workspace', os.O_RDONLY | os.O_DIRECTORY)
for i in range(${levels}):
    n = ${notUtf8 ? 'bytes([255]) * 255' : "'%03d' % i + 'd' * 252"}
    os.mkdir(n, dir_fd=fd)
    nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
for i in range(${files}):
    os.close(os.open('f%05d' % i, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
print('made')
`;

test('modified_files too long for a reply is cut short and says so; the checkpoint holds every file', async () => {
  // 2,300 paths of 10 KB not-UTF-8 bytes: 23 MB of paths, 70 MB of modified_files as UTF-8.
  const files = 2300;
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'not-utf8' });
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: deepFiles(40, files, true) })).stdout, 'made\n');
  const { checkpointId, metadata } = await worker.sessions.checkpointSession({ sessionId, incremental: false });
  assert.equal(metadata?.modifiedFilesTruncated, true);
  const listed = metadata!.modifiedFiles;
  assert.ok(listed.length > 0 && listed.length < files, `${listed.length} paths listed`);
  assert.ok(Buffer.byteLength(listed.join('')) <= 8 << 20, 'within 8 MiB');
  assert.deepEqual(listed, [...listed].sort(), 'in order');
  const restored = await worker.sessions.restoreSession({ checkpointId });
  assert.equal(restored.checkpointMetadata?.modifiedFilesTruncated, true);
  const count = await runTool(worker.tasks, restored.sessionId, 'run.python', {
    code: "import os\nn = 0\nfor _, _, names, _ in os.fwalk(b'/workspace'): n += len(names)\nprint(n)",
  });
  assert.equal(count.stdout, `${files}\n`, 'every file restored');
  await worker.sessions.destroySession({ sessionId });
  await worker.sessions.destroySession({ sessionId: restored.sessionId });
});

async function refusal(levels: number, files: number): Promise<ClientError> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: `deep-${levels}` });
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: deepFiles(levels, files) })).stdout, 'made\n');
  const outcome = await worker.sessions.checkpointSession({ sessionId, incremental: false }).catch((err: unknown) => err as ClientError);
  assert.ok('details' in outcome, `a checkpoint of ${files} files ${levels * 256} bytes deep was reported saved`);
  await worker.sessions.destroySession({ sessionId });
  return outcome;
}

test('paths longer than 16,383 bytes are refused naming one, before any Map holds them', async () => {
  const { code, details } = await refusal(70, 500);
  assert.equal(code, Status.FAILED_PRECONDITION, `${Status[code]}: ${details}`);
  assert.match(details, /^cannot checkpoint "workspace\/000d+.*: its path is 1\d{4} bytes long, more than a checkpoint holds \(16382\)/);
});

test('more than 64 MiB of paths in all is refused up front, not saved past what its reply can say', async () => {
  const { code, details } = await refusal(63, 4300);
  assert.equal(code, Status.RESOURCE_EXHAUSTED, `${Status[code]}: ${details}`);
  assert.match(details, /the paths of the session's files and directories, and its links' targets, come to more than 64 MiB, more than a checkpoint holds/);
});

// A release before the bound checkpointed paths up to a zip name's 65,535 bytes: what it reported
// saved still restores (up to MAX_LONG_PATHS_RESTORED such paths, so few that one hash bucket of
// them costs little); the restored session's next checkpoint names the path to shorten.
const DEEP = Array.from({ length: 78 }, (_, level) => `${String(level).padStart(3, '0')}${'d'.repeat(252)}`).join('/');
const longName = (i: number) => `workspace/${DEEP}/f${String(i).padStart(3, '0')}`;

test('a checkpoint of paths past 16,382 bytes made before the bound restores; more than 256 of them are refused, leaving nothing', async () => {
  const dir = join(worker.dataDir, 'checkpoints');
  plantCheckpoint(dir, 'checkpoint-longpaths1', zipOfEmptyFiles(3, 3, longName));
  const restored = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-longpaths1' });
  const count = await runTool(worker.tasks, restored.sessionId, 'run.python', {
    code: "import os\nn = 0\nfor _, _, names, _ in os.fwalk('/workspace'): n += len(names)\nprint(n)",
  });
  assert.equal(count.stdout, '3\n', 'every file restored');
  const again = await worker.sessions.checkpointSession({ sessionId: restored.sessionId, incremental: false }).catch((err: unknown) => err as ClientError);
  assert.ok('details' in again, 'checkpointed again past the bound');
  assert.equal(again.code, Status.FAILED_PRECONDITION, again.details);
  assert.match(again.details, /^cannot checkpoint "workspace\/000d+.*: its path is \d{5} bytes long, more than a checkpoint holds/);
  await worker.sessions.destroySession({ sessionId: restored.sessionId });

  const sessions = (await worker.sessions.getCapacity({})).activeSessions;
  plantCheckpoint(dir, 'checkpoint-longpaths2', zipOfEmptyFiles(300, 300, longName));
  const refused = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-longpaths2' }).catch((err: unknown) => err as ClientError);
  assert.ok('details' in refused, 'restored 300 paths past the bound');
  assert.equal(refused.code, Status.RESOURCE_EXHAUSTED, refused.details);
  assert.match(refused.details, /more than 256 paths longer than 16382 bytes/);
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, sessions, 'no session left');
});

test('the 256 long paths a restore allows are counted over its whole chain, not per archive', async () => {
  const dir = join(worker.dataDir, 'checkpoints');
  // Two archives of 200 long paths each (an incremental after a full one): 400 in the restore.
  plantCheckpoint(dir, 'checkpoint-longchain1', zipOfEmptyFiles(200, 200, longName));
  plantCheckpoint(
    dir,
    'checkpoint-longchain2',
    zipOfEmptyFiles(200, 200, (i) => longName(i + 500)),
    'checkpoint-longchain1',
  );
  const sessions = (await worker.sessions.getCapacity({})).activeSessions;
  const refused = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-longchain2' }).catch((err: unknown) => err as ClientError);
  assert.ok('details' in refused, 'restored 400 paths past the bound in a chain of two');
  assert.equal(refused.code, Status.RESOURCE_EXHAUSTED, refused.details);
  assert.match(refused.details, /more than 256 paths longer than 16382 bytes/);
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, sessions, 'no session left');
});
