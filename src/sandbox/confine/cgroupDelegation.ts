import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { runHostTool } from '../process/hostTools.js';

/**
 * Where the worker's cgroup subtree goes, and which of the limit controllers it gets: the part
 * of cgroup set-up that decides, over a CgroupFs so unit tests drive it on a fake tree.
 *
 * cgroup v2 (one tree): the worker uses its own group, as delegated to it (a container's with a
 * private cgroup namespace, a systemd unit's with Delegate=yes). The kernel lets a group that
 * holds processes pass no domain controller (memory) to children: the no-internal-processes
 * rule, from which only the real root is exempt. So when enabling the controllers for children
 * is refused (EBUSY), every process of the group (the worker, an init beside it) moves into a
 * leaf, `worker`, and the enabling is tried again. Where the own group lacks a controller but
 * the worker sees the real root (no cgroup namespace) and the root has them all, the subtree
 * hangs off the root instead (a root shell's terminal scope on a developer's machine).
 *
 * cgroup v1 (a hierarchy per controller): the worker's own group in each hierarchy.
 */

export type LimitController = 'memory' | 'cpu' | 'pids';
export const LIMIT_CONTROLLERS: readonly LimitController[] = ['memory', 'cpu', 'pids'];

/** The few cgroupfs operations set-up needs; errors carry the kernel's codes (EBUSY, ENOENT, EACCES, EROFS). */
export interface CgroupFs {
  exists(path: string): boolean;
  read(path: string): string;
  write(path: string, text: string): void;
  mkdir(path: string): void;
  /** Whether systemd delegated the group (the trusted.delegate or user.delegate extended attribute is 1). */
  delegated(path: string): boolean;
}

/** The host's cgroupfs; `delegated`: the groups systemd delegated, read ahead (delegatedGroups). */
export function hostCgroupFs(delegated: ReadonlySet<string> = new Set()): CgroupFs {
  return {
    exists: (path) => existsSync(path),
    read: (path) => readFileSync(path, 'utf8'),
    write: (path, text) => writeFileSync(path, text),
    mkdir: (path) => mkdirSync(path, { recursive: true }),
    delegated: (path) => delegated.has(path),
  };
}

/**
 * Which of `groups` systemd delegated (trusted.delegate or user.delegate is 1). Node reads no
 * extended attributes; Python does, asked once at start-up, on a host only.
 */
export async function delegatedGroups(groups: string[]): Promise<Set<string>> {
  if (groups.length === 0) return new Set();
  const answer = await runHostTool('python3', ['-I', '-S', '-c', DELEGATED_PY, ...groups], '', 10_000).catch(() => '');
  return new Set(answer.split('\n').filter((line) => line !== '' && groups.includes(line)));
}

const DELEGATED_PY = `import os, sys
def get(path, name):
    try:
        return os.getxattr(path, name)
    except OSError:
        return b""
for path in sys.argv[1:]:
    if b"1" in (get(path, "trusted.delegate"), get(path, "user.delegate")):
        print(path)`;

/** The v2 group the worker is in, and its parent: where delegation is asked about (none on v1). */
export function ownV2Groups(procSelfCgroup: string, mountinfo: string, base = '/sys/fs/cgroup'): string[] {
  const own = ownCgroupPaths(procSelfCgroup).get('');
  if (own === undefined) return [];
  const group = underBase(base, withinMount(own, cgroupMountRoots(mountinfo, base).get('')));
  return group === base ? [] : [group, dirname(group)];
}

/** A controller that cannot limit sessions here, and why. */
export interface MissingController {
  controller: LimitController;
  why: string;
}

export interface CgroupPlacement {
  version: 'v1' | 'v2';
  /** Where the worker's subtree is made: v2's one parent group (key `unified`), or v1's per hierarchy. */
  parents: Record<string, string>;
  /** Limit controllers the subtree gets. */
  controllers: LimitController[];
  missing: MissingController[];
  /** v2: the leaf the group's processes were moved into (to enable controllers below the group). */
  movedInto?: string;
}

/** v1 hierarchies the worker uses (cpuacct for usage; cpu, memory and pids for limits). */
export const V1_HIERARCHIES = ['memory', 'cpu', 'cpuacct', 'pids'] as const;

/** This process's cgroup paths by controller ("" for v2's unified entry), from /proc/self/cgroup's text. */
export function ownCgroupPaths(procSelfCgroup: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of procSelfCgroup.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers === undefined || path === undefined) continue;
    for (const c of controllers.split(',')) map.set(c, path);
  }
  return map;
}

/**
 * Finds where the worker's cgroups go under `base` (the cgroupfs mount) and prepares it (v2:
 * enables the controllers for children, moving the group's processes into a leaf if needed).
 * Undefined when there is no cgroupfs at all.
 */
export function delegateCgroups(fs: CgroupFs, procSelfCgroup: string, mountinfo: string, base = '/sys/fs/cgroup'): CgroupPlacement | undefined {
  const own = ownCgroupPaths(procSelfCgroup);
  const roots = cgroupMountRoots(mountinfo, base);
  if (fs.exists(join(base, 'cgroup.controllers'))) return delegateV2(fs, withinMount(own.get('') ?? '/', roots.get('')), base);
  for (const [hierarchy, root] of roots) if (own.has(hierarchy)) own.set(hierarchy, withinMount(own.get(hierarchy)!, root));
  return placeV1(fs, own, base);
}

/**
 * The group each cgroup mount under `base` shows as its top ("" for v2's), from
 * /proc/self/mountinfo: a container without a cgroup namespace has its own group mounted there,
 * while /proc/self/cgroup names the group from the hierarchy's top.
 */
export function cgroupMountRoots(mountinfo: string, base: string): Map<string, string> {
  const roots = new Map<string, string>();
  for (const line of mountinfo.split('\n')) {
    const [fields, after] = line.split(' - ');
    const parts = fields?.split(' ') ?? [];
    const type = after?.split(' ')[0];
    const root = parts[3];
    const point = parts[4];
    if (root === undefined || point === undefined || (type !== 'cgroup' && type !== 'cgroup2')) continue;
    if (type === 'cgroup2' && point === base) roots.set('', root);
    if (type === 'cgroup' && dirname(point) === base) for (const h of basename(point).split(',')) roots.set(h, root);
  }
  return roots;
}

/** A group as /proc/self/cgroup names it, as seen below a mount whose top is `root`. */
function withinMount(path: string, root: string | undefined): string {
  if (!root || root === '/') return path;
  if (path === root) return '/';
  return path.startsWith(`${root}/`) ? path.slice(root.length) : path;
}

/** `path` (a group as /proc/self/cgroup names it) under the mount `base`; `/` is the base itself. */
function underBase(base: string, path: string): string {
  return join(base, path).replace(/(.)\/+$/, '$1');
}

function controllersOf(fs: CgroupFs, group: string): string[] {
  try {
    return fs.read(join(group, 'cgroup.controllers')).trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

function delegateV2(fs: CgroupFs, ownPath: string, base: string): CgroupPlacement {
  const group = underBase(base, ownPath);
  // Ours to manage: the top of what we see (a container's private cgroup namespace, or the real
  // root), or a group systemd delegated. Not a group someone else manages (a login scope, a unit
  // without Delegate=yes): its processes are not ours to move, nor hanging our groups off the
  // real root instead (outside the unit's or the pod's limits, left behind when it ends).
  const ours = (g: string) => g === base || fs.delegated(g);
  // Already in the leaf an earlier start moved it into (the worker restarted in its container):
  // its parent passes the controllers on, and the subtree goes beside the leaf again.
  if (basename(group) === LEAF && group !== base && ours(dirname(group))) {
    const parent = dirname(group);
    const passed = subtreeOf(fs, parent);
    const wanted = LIMIT_CONTROLLERS.filter((c) => controllersOf(fs, parent).includes(c));
    if (wanted.length > 0 && wanted.every((c) => passed.includes(c)))
      return { version: 'v2', parents: { unified: parent }, controllers: wanted, missing: missingFrom(wanted, parent, base), movedInto: group };
  }
  if (!ours(group)) {
    const why = `the worker's cgroup ${ownPath} is not delegated to it (a systemd unit or scope needs Delegate=yes: \`systemd-run --scope -p Delegate=yes …\`, as make run does; a container, a private cgroup namespace)`;
    return { version: 'v2', parents: { unified: group }, controllers: [], missing: LIMIT_CONTROLLERS.map((controller) => ({ controller, why })) };
  }
  const available = controllersOf(fs, group);
  const missing = missingFrom(available, group, base);
  const wanted = LIMIT_CONTROLLERS.filter((c) => available.includes(c));
  const placement: CgroupPlacement = { version: 'v2', parents: { unified: group }, controllers: wanted, missing };
  if (wanted.length === 0) return placement;
  const enable = () => fs.write(join(group, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' '));
  try {
    try {
      enable();
    } catch (err) {
      if (errnoOf(err) !== 'EBUSY') throw err;
      placement.movedInto = moveProcessesToLeaf(fs, group, enable);
    }
  } catch (err) {
    return {
      ...placement,
      controllers: [],
      missing: LIMIT_CONTROLLERS.map((controller) => ({
        controller,
        why: available.includes(controller)
          ? `cannot enable controllers in ${join(group, 'cgroup.subtree_control')} (${errnoOf(err)}${ENABLE_HINTS[errnoOf(err)] ?? ''})`
          : missing.find((m) => m.controller === controller)!.why,
      })),
    };
  }
  return placement;
}

function subtreeOf(fs: CgroupFs, group: string): string[] {
  try {
    return fs.read(join(group, 'cgroup.subtree_control')).trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/** The limit controllers `group` does not have, each saying where to fix it. */
function missingFrom(available: readonly string[], group: string, base: string): MissingController[] {
  return LIMIT_CONTROLLERS.filter((c) => !available.includes(c)).map((controller) => ({
    controller,
    why: `the ${controller} controller is not delegated to the worker's cgroup /${relative(base, group)} (its parent's cgroup.subtree_control lacks +${controller})`,
  }));
}

/** What an enabling refused with an errno most likely means. */
const ENABLE_HINTS: Record<string, string> = {
  EROFS: ': the cgroupfs is mounted read-only (an unprivileged container)',
  EACCES: ': the group is not writable by the worker',
  EPERM: ': the group is not writable by the worker',
  EOPNOTSUPP: ': the group is threaded (cgroup.type), where domain controllers cannot be enabled',
  EBUSY: ': processes kept joining the group while its own moved into the leaf',
};

/** The leaf a v2 group's processes move into so it may pass domain controllers on. */
const LEAF = 'worker';

/**
 * Moves every process of `group` into its leaf `worker` and runs `enable` again; a process that
 * joined meanwhile (an exec into a container) is moved on the next round. Returns the leaf.
 */
function moveProcessesToLeaf(fs: CgroupFs, group: string, enable: () => void): string {
  const leaf = join(group, LEAF);
  fs.mkdir(leaf);
  for (let round = 0; ; round++) {
    for (const pid of fs.read(join(group, 'cgroup.procs')).split('\n').filter(Boolean)) {
      try {
        fs.write(join(leaf, 'cgroup.procs'), pid);
      } catch (err) {
        if (errnoOf(err) !== 'ESRCH') throw err; // exited meanwhile
      }
    }
    try {
      enable();
      return leaf;
    } catch (err) {
      if (errnoOf(err) !== 'EBUSY' || round >= 4) throw err;
    }
  }
}

function placeV1(fs: CgroupFs, own: Map<string, string>, base: string): CgroupPlacement | undefined {
  const parents: Record<string, string> = {};
  const missing: MissingController[] = [];
  for (const hierarchy of V1_HIERARCHIES) {
    const mount = join(base, hierarchy);
    if (fs.exists(join(mount, 'cgroup.procs'))) parents[hierarchy] = underBase(mount, own.get(hierarchy) ?? '/');
    else if ((LIMIT_CONTROLLERS as readonly string[]).includes(hierarchy))
      missing.push({ controller: hierarchy as LimitController, why: `no ${hierarchy} hierarchy is mounted at ${mount}` });
  }
  if (Object.keys(parents).length === 0) return undefined;
  const controllers = LIMIT_CONTROLLERS.filter((c) => c in parents);
  return { version: 'v1', parents, controllers, missing };
}

/**
 * The limit controllers sessions would go without here, and why: those set-up found missing, or
 * all of them where there are no cgroups to use (`noCgroups` says why).
 */
export function unenforcedLimits(support: { missing: MissingController[]; root: unknown } | undefined, noCgroups: string): MissingController[] {
  if (!support || support.root === undefined)
    return LIMIT_CONTROLLERS.map((controller) => support?.missing.find((m) => m.controller === controller) ?? { controller, why: noCgroups });
  return support.missing;
}

/** The one line start-up fails with when limits cannot be enforced: what is missing, why, and the fix. */
export function unenforcedLimitsMessage(missing: MissingController[]): string {
  const whys = [...new Set(missing.map((m) => m.why))].join('; ');
  return (
    `session limits cannot be enforced here (${missing.map((m) => m.controller).join(', ')}): ${whys}. ` +
    'Fix: run the worker as root with a writable cgroupfs whose memory, cpu and pids controllers reach its cgroup ' +
    '(cgroup v2: its own group delegated, as in a privileged container with a private cgroup namespace or a systemd unit with Delegate=yes; ' +
    'cgroup v1: the memory, cpu and pids hierarchies mounted), or, for development only, set WORKER_ALLOW_UNENFORCED_LIMITS=true'
  );
}
