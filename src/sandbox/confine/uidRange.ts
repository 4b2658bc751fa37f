import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostLock, type LockHolder } from './hostLock.js';
import { statusNumbers } from '../process/procfs.js';

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
  const taken = await hostUidRanges();
  let lastHolder: LockHolder | undefined;
  for (const candidate of candidates) {
    const clash = taken.find(([first, last]) => first < candidate + UID_RANGE_SIZE && last >= candidate);
    if (clash) {
      if (base !== undefined)
        throw new UidRangeError(
          `WORKER_UID_BASE ${base}: the uids ${base}-${base + UID_RANGE_SIZE - 1} overlap uids this host already gives out (${clash[2]}); choose another block`,
        );
      continue;
    }
    const claim = await HostLock.acquire(join(UID_LOCK_DIR, `uids-${candidate}.lock`), flock, `uids ${candidate}-${candidate + UID_RANGE_SIZE - 1}`);
    if (claim.acquired) {
      await killProcessesOfUids(candidate, candidate + UID_RANGE_SIZE - 1);
      return { base: candidate, size: UID_RANGE_SIZE, lock: claim.lock };
    }
    lastHolder = claim.holder;
  }
  if (base !== undefined) {
    throw new UidRangeError(
      `WORKER_UID_BASE ${base}: the uids ${base}-${base + UID_RANGE_SIZE - 1} are in use by another worker${lastHolder ? ` (pid ${lastHolder.pid})` : ''}; give each worker on a host its own base`,
    );
  }
  throw new UidRangeError(`no free uid range for session uids: ${RANGES} workers already run on this host`);
}

/**
 * Uids the host already gives out: users in /etc/passwd (above the system ones) and the
 * subordinate ranges of /etc/subuid and /etc/subgid (rootless containers). A session must
 * never be given one of them, nor their processes be killed as leftovers.
 */
async function hostUidRanges(): Promise<[number, number, string][]> {
  const ranges: [number, number, string][] = [];
  for (const line of (await readFile('/etc/passwd', 'utf8').catch(() => '')).split('\n')) {
    const [user, , uid] = line.split(':');
    const id = Number(uid);
    if (user && Number.isInteger(id) && id >= 1000 && id < 65534) ranges.push([id, id, `user ${user} in /etc/passwd`]);
  }
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    for (const line of (await readFile(file, 'utf8').catch(() => '')).split('\n')) {
      const [user, start, count] = line.split(':');
      const first = Number(start);
      const size = Number(count);
      if (user && Number.isInteger(first) && Number.isInteger(size) && size > 0) ranges.push([first, first + size - 1, `${user}'s subordinate ids in ${file}`]);
    }
  }
  return ranges;
}

/** SIGKILLs every process whose real uid is in [first, last]. */
async function killProcessesOfUids(first: number, last: number): Promise<void> {
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const status = await readFile(`/proc/${name}/status`, 'latin1').catch(() => '');
    const uid = statusNumbers(status, 'Uid')[0] ?? -1;
    if (uid >= first && uid <= last) {
      try {
        process.kill(Number(name), 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}
