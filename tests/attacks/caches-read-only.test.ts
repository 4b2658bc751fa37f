import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMountPoint } from '../../src/sandbox/confine/diskImage.js';
import { removeDataDir, startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// helper-32: sessions filled the data disk (WORKER_DISK_OVERCOMMIT above 1 lets them), the caches'
// disk image could not be written, and ext4 remounted the caches read-only. The worker was killed
// with them so; the next start found the mount, used it, and refused to start at its first write
// (EROFS, chown of pip-cache). The caches are only a cache: such a disk is made anew.

test('a caches disk left mounted read-only by a killed worker is made anew at the next start', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-caches-ro-'));
  const env = { WORKER_SPARE_SESSIONS: '0', WORKER_CACHE_DISK_MB: '64' };
  const caches = join(dataDir, 'caches');
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker({ dataDir, env });
    const exited = new Promise((resolve) => worker!.process.once('exit', resolve));
    worker.process.kill('SIGKILL');
    await exited;
    await worker.stop();
    // As an ext4 error leaves it (errors=remount-ro): the filesystem itself read-only.
    execFileSync('mount', ['-o', 'remount,ro', caches]);
    assert.throws(() => accessSync(caches, constants.W_OK), /EROFS/);
    worker = await startWorker({ dataDir, env });
    assert.ok(await isMountPoint(caches), 'the caches have their disk again');
    accessSync(caches, constants.W_OK);
    assert.ok(
      worker.logs.some((l) => String(l.message).includes('package caches disk') && String(l.error).includes('EROFS')),
      'the start says why it made the caches disk anew',
    );
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'after-read-only-caches' });
    assert.ok(sessionId);
  } finally {
    await stopHard(worker);
    await removeDataDir(dataDir);
  }
});
