import { readFileSync } from 'node:fs';
import { runHostTool } from '../process/hostTools.js';

/**
 * A session's disk seen with its files' owner changed, in no time: an idmapped mount (Linux 5.12+,
 * ext4) shows the files the disk holds for `diskUid` as `uid`'s, and stores what `uid` makes
 * as `diskUid`'s, without touching a file. A fork's disk (a copy of its source's, owned on disk
 * by the source's uid) and a session adopted with another uid are mounted so, where a chown of
 * every file would take seconds on a large tree (each inode of a reflinked image copied on
 * write). Root and the installer uid are mapped to themselves (pkg.install's scratch
 * directories); no other id is in use on a session's disk.
 */

const HELPER = readFileSync(new URL('../../../../src/sandbox/confine/idmappedMount.py', import.meta.url), 'utf8');

/** Remounts the disk mounted at `mountPoint` so `diskUid`'s files are `uid`'s (gids alike); `keep` ids stay themselves. */
export async function idmapDisk(mountPoint: string, diskUid: number, uid: number, keep: number[]): Promise<void> {
  const lines = [...new Set(keep)].filter((id) => id !== diskUid && id !== uid).map((id) => `${id} ${id} 1`);
  await runHostTool('python3', ['-I', '-S', '-c', HELPER, mountPoint, ...lines, `${diskUid} ${uid} 1`], '', 10_000);
}
