import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTask, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// A session's disk the kernel remounted read-only (ext4's errors=remount-ro after an I/O error) is
// not the session lacking a permission: writes fail FAILED_PRECONDITION naming the read-only disk.

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});

after(async () => worker?.stop());

/** Where the session's disk image is mounted (mountinfo's fifth field; octal escapes undone). */
function diskMountOf(sessionId: string): string {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((point): point is string => point !== undefined && point.startsWith(`${worker.dataDir}/`) && point.includes(sessionId));
  assert.equal(points.length, 1, `one mount of the session's disk: ${points.join(', ')}`);
  return points[0]!;
}

test('fs.write on a disk the kernel made read-only: FAILED_PRECONDITION naming the read-only disk, not PERMISSION_DENIED', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'ro', config: { limits: { maxDiskMb: 64 } } });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'kept.txt', contents: 'before' });
  const mount = diskMountOf(sessionId);
  execFileSync('mount', ['-o', 'remount,ro', mount]);
  try {
    for (const path of ['kept.txt', 'new.txt', 'dir/new.txt']) {
      const run = await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path, contents: 'after' } });
      assert.equal(run.code, Status.FAILED_PRECONDITION, `fs.write ${path}: ${Status[run.code]} ${run.error?.details ?? ''}`);
      assert.match(run.error?.details ?? '', /the session's disk is read-only/);
    }
    // What is there still reads.
    assert.equal((await runTool(worker.tasks, sessionId, 'fs.read', { path: 'kept.txt' })).contents, 'before');
  } finally {
    execFileSync('mount', ['-o', 'remount,rw', mount]);
  }
  assert.equal((await runTool(worker.tasks, sessionId, 'fs.write', { path: 'new.txt', contents: 'after' })).bytes_written, '5');
  await worker.sessions.destroySession({ sessionId });
});
