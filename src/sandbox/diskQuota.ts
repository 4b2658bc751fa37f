import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A workspace capped at `megabytes`: a size-limited tmpfs mounted over its directory, so writes
 * past the cap fail with ENOSPC for the session's code and for fs.write alike. (RAM-backed: the
 * cap is what keeps it small.)
 */
export async function mountWorkspaceQuota(dir: string, megabytes: number, owner: { uid: number; gid: number } | undefined): Promise<void> {
  const options = [`size=${megabytes}m`, 'mode=0755', ...(owner ? [`uid=${owner.uid}`, `gid=${owner.gid}`] : [])];
  await run('mount', ['-t', 'tmpfs', '-o', options.join(','), 'codegen-workspace', dir]);
}

export async function unmountWorkspaceQuota(dir: string): Promise<void> {
  await run('umount', ['-l', dir]).catch(() => undefined);
}

/** Unmounts quotas an earlier run left under `root`. */
export async function unmountStaleQuotas(root: string): Promise<void> {
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  const stale = mounts
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point.startsWith(`${root}/`));
  for (const point of stale.reverse()) await unmountWorkspaceQuota(point);
}
