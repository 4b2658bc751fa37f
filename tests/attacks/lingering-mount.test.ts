import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { mountsBelow, unmountDiskImage } from '../../src/sandbox/confine/diskImage.js';
import { runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// A session's disk unmounted lazily at a stop lives on while any mount namespace still holds a
// copy of its mount (a killed sandbox's, torn down late on a busy host). A restart that attached
// the image to a second loop device mounted a second ext4 instance of it beside the first: two
// journals and two superblocks written to one image, the first one's last write (its unmount)
// landing whenever that namespace went (e2fsck then found its bitmaps wrong). The restart must
// mount the filesystem that is still live, also when it reaches the data directory by another
// path than the stopped worker did (the loop device shows the path it was opened by).

/** The loop devices bound to the file `image` is (its device and inode: the path a loop device shows is the one it was opened by). */
function loopsHolding(image: string): string[] {
  const st = statSync(image);
  const listed = JSON.parse(
    execFileSync('losetup', ['--list', '--json', '-O', 'NAME,BACK-INO,BACK-MAJ:MIN'], { encoding: 'utf8' }) || '{"loopdevices":[]}',
  ) as {
    loopdevices: { name: string; 'back-ino': number | string; 'back-maj:min': string }[];
  };
  return listed.loopdevices
    .filter((loop) => Number(loop['back-ino']) === st.ino && loop['back-maj:min'].trim() === `${major(st.dev)}:${minor(st.dev)}`)
    .map((loop) => loop.name.replace('/dev/', ''))
    .sort();
}

// glibc's encoding of a device number (the major's low 12 bits at 8, the minor's low 8 bits at 0).
const major = (dev: number) => Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn);
const minor = (dev: number) => Number(BigInt(dev) & 0xffn) | Number((BigInt(dev) >> 12n) & ~0xffn);

for (const how of ['the same path', 'a bind mount of its data directory'] as const)
  test(`a disk still mounted in a lingering namespace at a stop is mounted again as that same filesystem, not a second one (restarted on ${how})`, async () => {
    const base = mkdtempSync(join(tmpdir(), 'codegen-lingering-'));
    const dataDir = join(base, 'data');
    mkdirSync(dataDir);
    // A container's volume, systemd's BindPaths= or a changed WORKER_DATA_DIR: the same files through another path.
    const view = join(base, 'view');
    const env = { WORKER_SPARE_SESSIONS: '0' };
    let worker: RunningWorker | undefined;
    let lingering: ChildProcess | undefined;
    let gone: Promise<unknown> = Promise.resolve();
    try {
      worker = await startWorker({ dataDir, env });
      const { sessionId } = await worker.sessions.createSession({ workspaceId: 'lingering' });
      await runTool(worker.tasks, sessionId, 'fs.write', { path: 'before.txt', contents: 'before the stop' });
      const image = join(dataDir, 'sessions', sessionId, 'disk.img');
      const workspace = join(dataDir, 'sessions', sessionId, 'disk', 'workspace');
      // A namespace with a private copy of the host's mounts, the disk's among them, as a sandbox's
      // is; it lives while its stdin is open.
      lingering = spawn('unshare', ['--mount', '--propagation', 'private', 'cat'], { stdio: ['pipe', 'ignore', 'inherit'] });
      gone = new Promise((resolve) => lingering!.once('exit', resolve));
      const pid = lingering.pid!;
      await waitFor(
        async () => readlinkSync(`/proc/${pid}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt') && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'cat',
      );
      const inLingering = (file: string) => execFileSync('nsenter', ['-t', String(pid), '-m', 'cat', join(workspace, file)], { encoding: 'utf8' });
      assert.equal(inLingering('before.txt'), 'before the stop');

      await worker.stop();
      const held = loopsHolding(image);
      assert.equal(held.length, 1, 'the lingering namespace keeps the unmounted disk alive');

      let restartDir = dataDir;
      if (how !== 'the same path') {
        mkdirSync(view);
        execFileSync('mount', ['--bind', dataDir, view]);
        restartDir = view;
      }
      worker = await startWorker({ dataDir: restartDir, env });
      assert.deepEqual(loopsHolding(image), held, 'the restart mounts the loop device that holds the image, no second one');
      await runTool(worker.tasks, sessionId, 'fs.write', { path: 'after.txt', contents: 'after the restart' });
      assert.equal(inLingering('after.txt'), 'after the restart', 'one filesystem: the lingering mount sees the write at once');

      // The lingering namespace goes, then the worker: the image holds both files and checks clean.
      lingering.stdin!.end();
      await gone;
      assert.equal(await runTool(worker.tasks, sessionId, 'fs.read', { path: 'before.txt' }).then((r) => r.contents), 'before the stop');
      await worker.stop();
      worker = undefined;
      // A loop device is let go asynchronously (autoclear), after the last sandbox namespace holding the disk is torn down.
      await waitFor(() => loopsHolding(image).length === 0, 20_000).catch(() =>
        assert.deepEqual(loopsHolding(image), [], 'nothing holds the image once both have gone'),
      );
      execFileSync('e2fsck', ['-fn', image], { stdio: 'pipe' });
      worker = await startWorker({ dataDir, env });
      for (const [file, contents] of [
        ['before.txt', 'before the stop'],
        ['after.txt', 'after the restart'],
      ] as const)
        assert.equal((await runTool(worker.tasks, sessionId, 'fs.read', { path: file })).contents, contents);
    } finally {
      lingering?.stdin!.end();
      await gone;
      await stopHard(worker);
      for (const point of (await mountsBelow(base)).reverse()) await unmountDiskImage(point);
      rmSync(base, { recursive: true, force: true });
    }
  });
