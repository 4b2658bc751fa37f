import { mkdir, readFile } from 'node:fs/promises';
import { messageOf } from '../../errors.js';

/**
 * Quick cgroup moves. Moving a process into a cgroup takes a lock that every fork and exit on
 * the host takes too (the kernel's threadgroup rwsem). By default the kernel keeps it cheap for
 * forks and exits, and each move waits for an RCU grace period: milliseconds on a busy host, on
 * the path of every warm call (its child is moved into the task's group). A cgroup hierarchy
 * mounted with `favordynmods` (Linux 6.0+) turns that around for the whole host: moves take
 * tens of microseconds, forks and exits an atomic operation more.
 *
 * A v1 hierarchy cannot be remounted with the option, so the worker mounts one of its own, named
 * and with no controllers: it holds no process and changes nothing else. It stays mounted when
 * the worker stops, like a sysctl (a later start finds it).
 */

/** The name of the worker's own hierarchy (`mount -t cgroup -o none,name=…`). */
export const DYNMODS_HIERARCHY = 'codegen-dynmods';

/** Whether a cgroup filesystem in `mounts` (the text of /proc/self/mounts) has favordynmods. */
export function favorsDynmods(mounts: string): boolean {
  return mounts.split('\n').some((line) => {
    const [, , type, options = ''] = line.split(' ');
    return (type === 'cgroup' || type === 'cgroup2') && options.split(',').includes('favordynmods');
  });
}

/** What the worker found or did: moves are quick, or why not. */
export type DynmodsOutcome = { quick: true; how: string } | { quick: false; why: string };

/**
 * Makes cgroup moves quick where the host lets the worker: finds a hierarchy mounted with
 * favordynmods, else mounts its own at `dir` with `mount`. Never throws: a kernel without the
 * option (or a worker that may not mount) keeps the kernel's default.
 */
export async function favorDynamicModifications(
  dir: string,
  mount: (args: string[]) => Promise<unknown>,
  readMounts: () => Promise<string> = () => readFile('/proc/self/mounts', 'utf8'),
): Promise<DynmodsOutcome> {
  const mounted = () => readMounts().then(favorsDynmods, () => false);
  if (await mounted()) return { quick: true, how: 'a cgroup hierarchy has favordynmods' };
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await mount(['-t', 'cgroup', '-o', `none,name=${DYNMODS_HIERARCHY},favordynmods`, 'cgroup', dir]);
  } catch (err) {
    // Another worker starting beside this one may have mounted it first.
    if (await mounted()) return { quick: true, how: 'a cgroup hierarchy has favordynmods' };
    return { quick: false, why: `no cgroup hierarchy with favordynmods could be mounted (${messageOf(err).slice(0, 200)})` };
  }
  return (await mounted()) ? { quick: true, how: `mounted a hierarchy with favordynmods at ${dir}` } : { quick: false, why: 'the kernel ignored favordynmods' };
}
