import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A data directory on a small filesystem of its own (ext4, loop-mounted): what fills it, fills only it. */
export interface DataDisk {
  dataDir: string;
  /** Mount options of every filesystem mounted below the data directory (sessions' disks, the cache disk). */
  mountOptionsBelow(): string[];
  /** Unmounts everything below it and itself, and removes it. */
  remove(): void;
}

/**
 * Makes a data disk of `size` (as truncate(1) says it: `1G`), mounted in a fresh directory: ext4,
 * or XFS with reflinks (a data directory whose files can be cloned: session forks).
 */
export function makeDataDisk(prefix: string, size: string, type: 'ext4' | 'xfs' = 'ext4'): DataDisk {
  const top = mkdtempSync(join(tmpdir(), prefix));
  const image = join(top, 'data.img');
  const mountPoint = join(top, 'mnt');
  const dataDir = join(mountPoint, 'data');
  mkdirSync(mountPoint);
  execFileSync('truncate', ['-s', size, image]);
  if (type === 'xfs') execFileSync('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image]);
  else execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
  execFileSync('mount', ['-o', 'loop', image, mountPoint]);
  mkdirSync(dataDir);
  const mountsBelow = (dir: string) =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .flatMap((line) => {
        const [, , , , mounted, options] = line.split(' ');
        return mounted?.startsWith(`${dir}/`) && options !== undefined ? [{ mounted, options }] : [];
      });
  return {
    dataDir,
    mountOptionsBelow: () => mountsBelow(dataDir).map(({ options }) => options),
    remove() {
      for (const { mounted } of mountsBelow(mountPoint).reverse()) execFileSync('umount', ['-l', mounted]);
      execFileSync('umount', ['-l', mountPoint]);
      rmSync(top, { recursive: true, force: true });
    },
  };
}
