import { copyFile, constants, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runHostTool } from '../process/hostTools.js';

/**
 * Copies of a mounted session disk (diskImage.ts) at one instant, for ForkSession: the disk's
 * filesystem is frozen (fsfreeze: dirty data and the journal written out, writers blocked) while
 * its image file is copied to each target, then thawed. On a data directory that clones files
 * (XFS with reflink, btrfs) each copy is a reflink: blocks shared until either side writes them,
 * made in a time that does not grow with what the disk holds. Elsewhere the copy is a full sparse
 * one, and the source's writers wait for it.
 */

/** How copies are made on this data directory. */
export type CopyMethod = 'reflink' | 'copy';

/** Freeze, copy to every target, thaw: one script, so one process does it and the thaw always runs. */
const FREEZE_AND_COPY = [
  'mount=$1 image=$2 mode=$3; shift 3',
  // Written out first, writers still going: the freeze (which writes out what is left, writers waiting) is then short.
  'sync -f "$mount" || exit 1',
  'start=$(date +%s%N) status=0',
  'fsfreeze -f "$mount" || exit 1',
  'for target; do',
  '  if [ "$mode" = reflink ]; then cp --reflink=always "$image" "$target" || { status=1; break; }',
  '  else cp --sparse=always "$image" "$target" || { status=1; break; }; fi',
  'done',
  'end=$(date +%s%N)',
  'fsfreeze -u "$mount" || status=2',
  'echo $(( (end - start) / 1000000 ))',
  'exit $status',
].join('\n');

/**
 * Copies `image` (mounted on `mountPoint`) to each of `targets` at one instant; the milliseconds
 * the filesystem's writers waited (the freeze, the copies, the thaw). The targets must not
 * exist. Thawed whatever happens.
 */
export async function copyMountedImage(mountPoint: string, image: string, targets: string[], method: CopyMethod): Promise<{ pausedMs: number }> {
  try {
    const out = await runHostTool('/bin/sh', ['-c', FREEZE_AND_COPY, 'fork', mountPoint, image, method, ...targets]);
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
