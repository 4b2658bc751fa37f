import { execFile } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
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

/** Mount points (as the kernel names them: no links) strictly below `root`, deepest last. */
export async function mountsBelow(root: string): Promise<string[]> {
  const real = await realpath(root).catch(() => root);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // Field 5 is the mount point, with space, tab, newline and backslash escaped as octal.
  const points = mountinfo
    .split('\n')
    .map((line) => (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point) => point.startsWith(`${real}/`));
  return [...new Set(points)];
}

/** Unmounts quotas an earlier run left under `root` (a worker killed with them mounted). */
export async function unmountStaleQuotas(root: string): Promise<void> {
  for (const point of (await mountsBelow(root)).reverse()) await unmountWorkspaceQuota(point);
}
