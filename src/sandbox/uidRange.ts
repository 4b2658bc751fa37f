import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostLock, type LockHolder } from './hostLock.js';

/** Where workers on one host claim their uid ranges (a tmpfs: claims need not survive a reboot). */
export const UID_LOCK_DIR = '/run/codegen-mcp-worker';
/** Host uids a worker hands out: `base` is its installer, `base + 1` … `base + SIZE - 1` its sessions. */
export const UID_RANGE_SIZE = 100_000;
const FIRST_BASE = 200_000;
const RANGES = 100;

export class UidRangeError extends Error {
  override name = 'UidRangeError';
}

/** A range of host uids this worker alone hands out, for as long as it runs. */
export interface UidRange {
  base: number;
  size: number;
  lock: HostLock;
}

/**
 * Claims a uid range: `base` when configured (WORKER_UID_BASE), else the first free one of
 * 200000, 300000, … Two workers on one host never share a session uid: each range is held by a
 * kernel lock (hostLock.ts) that goes with its worker. Processes left running with uids of the
 * claimed range (by a worker that died) are killed.
 */
export async function claimUidRange(flock: string, base: number | undefined): Promise<UidRange> {
  const candidates = base !== undefined ? [base] : Array.from({ length: RANGES }, (_, i) => FIRST_BASE + i * UID_RANGE_SIZE);
  let lastHolder: LockHolder | undefined;
  for (const candidate of candidates) {
    const claim = await HostLock.acquire(join(UID_LOCK_DIR, `uids-${candidate}.lock`), flock, `uids ${candidate}-${candidate + UID_RANGE_SIZE - 1}`);
    if (claim.acquired) {
      await killProcessesOfUids(candidate, candidate + UID_RANGE_SIZE - 1);
      return { base: candidate, size: UID_RANGE_SIZE, lock: claim.lock };
    }
    lastHolder = claim.holder;
  }
  if (base !== undefined) {
    throw new UidRangeError(`WORKER_UID_BASE ${base}: the uids ${base}-${base + UID_RANGE_SIZE - 1} are in use by another worker${lastHolder ? ` (pid ${lastHolder.pid})` : ''}; give each worker on a host its own base`);
  }
  throw new UidRangeError(`no free uid range for session uids: ${RANGES} workers already run on this host`);
}

/** SIGKILLs every process whose real uid is in [first, last]. */
async function killProcessesOfUids(first: number, last: number): Promise<void> {
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const status = await readFile(`/proc/${name}/status`, 'latin1').catch(() => '');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
    if (uid >= first && uid <= last) {
      try {
        process.kill(Number(name), 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}
