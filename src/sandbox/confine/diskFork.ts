import { copyFile, constants, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathExists } from '../../storage/pathExists.js';
import { runHostTool } from '../process/hostTools.js';

/**
 * Copies of a mounted session disk (diskImage.ts) at one instant, for ForkSession, where the data
 * directory cannot clone files (reflinks are diskHelper.ts's): a copy takes as long as the data,
 * so the disk's filesystem is frozen for it (fsfreeze: what was written is on the image, writers
 * wait), then thawed.
 */

/** How copies are made on this data directory: reflinks (diskHelper.ts), or full copies (here). */
export type CopyMethod = 'reflink' | 'copy';

/** Freeze, copy to every target, thaw: one script, so one process does it and the thaw always runs. */
const FROZEN_COPY = [
  'mount=$1 image=$2; shift 2',
  'sync -f "$mount" || exit 1',
  'start=$(date +%s%N) status=0',
  'fsfreeze -f "$mount" || exit 1',
  'for target; do cp --sparse=always "$image" "$target" || { status=1; break; }; done',
  'end=$(date +%s%N)',
  'fsfreeze -u "$mount" || status=2',
  'echo $(( (end - start) / 1000000 ))',
  'exit $status',
].join('\n');

/**
 * Copies `image` (mounted on `mountPoint`) to each of `targets`, frozen; the milliseconds the
 * filesystem's writers waited. The targets must not exist. Thawed whatever happens.
 */
export async function copyFrozen(mountPoint: string, image: string, targets: string[]): Promise<{ pausedMs: number }> {
  // Marked first: a worker stopped while the disk is frozen leaves the mark for the next start (thawIfLeftFrozen).
  await writeFile(`${image}${FREEZING}`, '');
  try {
    const out = await runHostTool('/bin/sh', ['-c', FROZEN_COPY, 'fork', mountPoint, image, ...targets]);
    return { pausedMs: Number(out.trim()) || 0 };
  } catch (err) {
    await thawDisk(mountPoint);
    await Promise.all(targets.map((t) => rm(t, { force: true })));
    throw err;
  } finally {
    await rm(`${image}${FREEZING}`, { force: true });
  }
}

/** Beside a disk image while its filesystem is frozen for a copy. */
const FREEZING = '.freezing';

/** Thaws a disk a copy left frozen (the worker stopped in the middle of it): only one marked so, no process for the others. */
export async function thawIfLeftFrozen(mountPoint: string, image: string): Promise<void> {
  if (!(await pathExists(`${image}${FREEZING}`))) return;
  await thawDisk(mountPoint);
  await rm(`${image}${FREEZING}`, { force: true });
}

async function thawDisk(mountPoint: string): Promise<void> {
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
