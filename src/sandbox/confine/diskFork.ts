import { copyFile, constants, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runHostTool } from '../process/hostTools.js';

/**
 * Copies of a mounted session disk (diskImage.ts) at one instant, for ForkSession. On a data
 * directory that clones files (XFS with reflink, btrfs) the disk's filesystem is synced (all it
 * was given is on its image) and the image cloned: a reflink is made under the image's lock, so
 * each clone is the image at one instant, as a crash would leave it after that sync (ext4
 * replays its journal when the clone is mounted); writers never wait, and the time does not grow
 * with what the disk holds. Elsewhere a copy takes as long as the data, so the filesystem is
 * frozen for it (fsfreeze: writers wait), and thawed.
 */

/** How copies are made on this data directory. */
export type CopyMethod = 'reflink' | 'copy';

/** Sync and clone, or freeze, copy and thaw: one script, so one process does it and a thaw always runs. */
const COPY_SCRIPT = [
  'mount=$1 image=$2 mode=$3; shift 3',
  'sync -f "$mount" || exit 1',
  'if [ "$mode" = reflink ]; then',
  '  for target; do cp --reflink=always "$image" "$target" || exit 1; done',
  '  echo 0; exit 0',
  'fi',
  'start=$(date +%s%N) status=0',
  'fsfreeze -f "$mount" || exit 1',
  'for target; do cp --sparse=always "$image" "$target" || { status=1; break; }; done',
  'end=$(date +%s%N)',
  'fsfreeze -u "$mount" || status=2',
  'echo $(( (end - start) / 1000000 ))',
  'exit $status',
].join('\n');

/**
 * Copies `image` (mounted on `mountPoint`) to each of `targets` at one instant; the milliseconds
 * the filesystem's writers waited (0 for clones). The targets must not exist. Thawed whatever
 * happens.
 */
export async function copyMountedImage(mountPoint: string, image: string, targets: string[], method: CopyMethod): Promise<{ pausedMs: number }> {
  try {
    const out = await runHostTool('/bin/sh', ['-c', COPY_SCRIPT, 'fork', mountPoint, image, method, ...targets]);
    return { pausedMs: Number(out.trim()) || 0 };
  } catch (err) {
    await thawDisk(mountPoint);
    await Promise.all(targets.map((t) => rm(t, { force: true })));
    throw err;
  }
}

/** Thaws a disk a fork left frozen (the worker stopped in the middle); nothing when it is not frozen. */
export async function thawDisk(mountPoint: string): Promise<void> {
  await runHostTool('fsfreeze', ['-u', mountPoint]).catch(() => undefined);
}

/** Whether files on the filesystem of `dir` can be cloned (a reflink of a small file made there, tried once). */
export async function probeCopyMethod(dir: string): Promise<CopyMethod> {
  const from = join(dir, `.reflink-probe-${process.pid}`);
  const to = `${from}.clone`;
  try {
    await writeFile(from, 'probe');
    await copyFile(from, to, constants.COPYFILE_FICLONE_FORCE);
    return 'reflink';
  } catch {
    return 'copy';
  } finally {
    await Promise.all([rm(from, { force: true }), rm(to, { force: true })]);
  }
}
