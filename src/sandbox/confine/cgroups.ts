import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { pathExists } from '../../storage/pathExists.js';
import { messageOf } from '../../errors.js';
import {
  delegateCgroups,
  delegatedGroups,
  hostCgroupFs,
  ownV2Groups,
  LIMIT_CONTROLLERS,
  type LimitController,
  type MissingController,
  type V1_HIERARCHIES,
} from './cgroupDelegation.js';

/**
 * Control groups for sessions and their tasks: memory, CPU quota and process-count limits the
 * kernel enforces, and usage read back from the kernel's own accounting. Works with cgroup v1
 * (one hierarchy per controller, as on this project's machines) and v2 (one unified tree).
 * Each worker owns a subtree `codegen-<pid>` under its own cgroup; sessions are children of it
 * and tasks children of their session, so a task's limits narrow its session's.
 *
 * Setting limits and reading usage use synchronous calls: cgroupfs answers them from memory in
 * tens of microseconds, far less than a round trip through libuv's thread pool. Making a group
 * stays asynchronous. So does moving a process into one, unless moves are quick
 * (favorDynmods.ts): by default each waits for an RCU grace period, milliseconds on a busy host,
 * which must not stall the event loop.
 */

export interface CgroupLimits {
  memoryBytes?: number | undefined;
  cpuPercent?: number | undefined;
  maxProcesses?: number | undefined;
}

export interface Cgroup {
  readonly name: string;
  /** The cgroup.procs files a process writes its pid to, to join this group. */
  readonly procsFiles: string[];
  child(name: string, limits: CgroupLimits): Promise<Cgroup>;
  /** Sets (or tightens) the group's limits. */
  setLimits(limits: CgroupLimits): Promise<void>;
  /** Renames the group in place (processes and limits stay). */
  rename(name: string): Promise<Cgroup>;
  /** OOM kills inside this group so far. */
  oomKills(): Promise<number>;
  /** Forks the group's processes were refused so far (a pids limit, its own or an ancestor's). */
  forkRefusals(): Promise<number>;
  /** CPU time used by the group, in nanoseconds. */
  cpuUsageNs(): Promise<number>;
  /** Memory of the group's processes (anonymous/RSS, not file cache), in bytes. */
  memoryBytes(): Promise<number>;
  /** Moves a (host) process into the group. */
  addProcess(pid: number): Promise<void>;
  /** Whether a (host) process is in the group now. */
  holds(pid: number): boolean;
  /** The (host) processes in the group now. */
  pids(): number[];
  /** Kills every process in the group, keeping the group; resolves whether it is empty now. */
  killProcesses(): Promise<boolean>;
  /**
   * Makes an emptied group as good as new for its next user: no limits of its own, and OOM
   * kills and refused forks counted from now on. Synchronous cgroupfs writes; throws if the
   * group is gone.
   */
  renew(): void;
  /** Kills every process in the group and removes it. */
  destroy(): Promise<void>;
}

export interface CgroupSupport {
  version: 'v1' | 'v2';
  /** What is limited: memory, cpu, pids. */
  controllers: LimitController[];
  /** Limit controllers sessions do not get here, and why. */
  missing: MissingController[];
  /** The worker's own subtree; undefined when no hierarchy could hold it. */
  root: Cgroup | undefined;
  /** v2: the leaf the worker's processes moved into so its group could pass controllers on. */
  movedInto?: string | undefined;
  /** How processes are moved into groups, and why (for the start-up log). */
  moves?: string | undefined;
}

/** Cgroups the worker has a subtree in. */
export type UsableCgroups = CgroupSupport & { root: Cgroup };

const CPU_PERIOD_US = 100_000;

function cpuQuotaUs(percent: number): number {
  return Math.max(1000, Math.round((percent * CPU_PERIOD_US) / 100));
}
type V1Controller = (typeof V1_HIERARCHIES)[number];

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function readNumber(path: string): number {
  return Number(readText(path).trim()) || 0;
}

function readKeyed(path: string, key: string): number {
  const text = readText(path);
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** Kills the processes listed in `procsFiles` until none is left (then true) or it gives up. */
async function killProcsIn(procsFiles: string[]): Promise<boolean> {
  for (let round = 0; round < 50; round++) {
    const pids = procsFiles
      .map(readText)
      .flatMap((t) => t.split('\n'))
      .filter((l) => l !== '')
      .map(Number);
    if (pids.length === 0) return true;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await delay(10);
  }
  return false;
}

/**
 * One kill of a group's processes at a time: a caller while one is under way joins it. Two at
 * once end apart: a cancelled call kills its group twice (its abort, and its end), the group
 * went to its next user when one loop saw it empty, and the other, still reading it, killed what
 * was placed there meanwhile (the child forked ahead of the next call).
 */
class OneKillAtATime {
  private underWay: Promise<boolean> | undefined;

  run(kill: () => Promise<boolean>): Promise<boolean> {
    if (this.underWay) return this.underWay;
    const underWay = kill().finally(() => {
      if (this.underWay === underWay) this.underWay = undefined;
    });
    this.underWay = underWay;
    return underWay;
  }
}

/** The pids a cgroup.procs file lists. */
function pidsIn(procsFile: string | undefined): number[] {
  return procsFile === undefined
    ? []
    : readText(procsFile)
        .split('\n')
        .filter((l) => l !== '')
        .map(Number);
}

/** Whether a cgroup.procs file lists `pid`. */
function listsPid(procsFile: string | undefined, pid: number): boolean {
  return pidsIn(procsFile).includes(pid);
}

/** Removes an emptied group's directory; EBUSY (a process will not die yet) once it has waited a moment. */
async function removeDir(dir: string): Promise<void> {
  // A group can only be removed once empty; its processes may take a moment to be reaped.
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 50) throw err;
      await delay(20);
    }
  }
}

/**
 * Removes a group whose processes will not die yet (in uninterruptible sleep: a sync(2) behind
 * a long write-back, a hung read), trying again less and less often until it is gone; then
 * `removed`. Whoever counts groups keeps counting it until then.
 */
export function destroyWhenItCan(group: Cgroup, removed: () => void = () => undefined, waitMs = 1000): void {
  const timer = setTimeout(() => {
    group.destroy().then(removed, () => destroyWhenItCan(group, removed, Math.min(waitMs * 2, 60_000)));
  }, waitMs);
  timer.unref();
}

/** How a process is moved into a group: `quick` synchronously (favorDynmods.ts), else through the thread pool. */
export type CgroupMoves = 'quick' | 'slow';

/** Writes `pid` to each cgroup.procs file in turn. */
async function moveInto(procsFiles: string[], pid: number, moves: CgroupMoves): Promise<void> {
  for (const file of procsFiles) {
    if (moves === 'quick') writeFileSync(file, String(pid));
    else await writeFile(file, String(pid));
  }
}

class CgroupV1 implements Cgroup {
  private readonly kills = new OneKillAtATime();
  /** Counters' values when the group was last renewed. */
  private counted = { oomKills: 0, forkRefusals: 0 };
  /** The limits of its own the group has been given since it was made or renewed. */
  private readonly limited = new Set<keyof CgroupLimits>();

  constructor(
    readonly name: string,
    private readonly dirs: Partial<Record<V1Controller, string>>,
    private readonly moves: CgroupMoves = 'slow',
  ) {}

  get procsFiles(): string[] {
    return Object.values(this.dirs).map((d) => join(d, 'cgroup.procs'));
  }

  /**
   * The first of procsFiles: a process is written to each in turn and a fork joins them all,
   * so one in any of this group's hierarchies is in this one.
   */
  private get firstProcsFile(): string[] {
    return this.procsFiles.slice(0, 1);
  }

  async child(name: string, limits: CgroupLimits): Promise<Cgroup> {
    const dirs: Partial<Record<V1Controller, string>> = {};
    for (const [controller, dir] of Object.entries(this.dirs) as [V1Controller, string][]) dirs[controller] = join(dir, name);
    await Promise.all(Object.values(dirs).map((dir) => mkdir(dir, { recursive: true })));
    const group = new CgroupV1(name, dirs, this.moves);
    await group.setLimits(limits);
    return group;
  }

  setLimits(limits: CgroupLimits): Promise<void> {
    const dirs = this.dirs;
    for (const [name, value] of Object.entries(limits)) if (value) this.limited.add(name as keyof CgroupLimits);
    if (dirs.memory && limits.memoryBytes) {
      writeFileSync(join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
      const swap = join(dirs.memory, 'memory.memsw.limit_in_bytes');
      if (existsSync(swap)) writeFileSync(swap, String(limits.memoryBytes));
    }
    if (dirs.cpu && limits.cpuPercent) {
      writeFileSync(join(dirs.cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      writeFileSync(join(dirs.cpu, 'cpu.cfs_quota_us'), String(cpuQuotaUs(limits.cpuPercent)));
    }
    if (dirs.pids && limits.maxProcesses) writeFileSync(join(dirs.pids, 'pids.max'), String(limits.maxProcesses));
    return Promise.resolve();
  }

  async rename(name: string): Promise<Cgroup> {
    const dirs: Partial<Record<V1Controller, string>> = {};
    for (const [controller, dir] of Object.entries(this.dirs) as [V1Controller, string][]) {
      dirs[controller] = join(dirname(dir), name);
      renameSync(dir, dirs[controller]);
    }
    return Promise.resolve(new CgroupV1(name, dirs, this.moves));
  }

  addProcess(pid: number): Promise<void> {
    return moveInto(this.procsFiles, pid, this.moves);
  }

  killProcesses(): Promise<boolean> {
    return this.kills.run(() => killProcsIn(this.firstProcsFile));
  }

  holds(pid: number): boolean {
    return listsPid(this.firstProcsFile[0], pid);
  }

  pids(): number[] {
    return pidsIn(this.firstProcsFile[0]);
  }

  renew(): void {
    const dirs = this.dirs;
    // Unlimited again: the swap limit first, as the memory limit may not exceed it.
    if (dirs.memory && this.limited.has('memoryBytes')) {
      const swap = join(dirs.memory, 'memory.memsw.limit_in_bytes');
      if (existsSync(swap)) writeFileSync(swap, '-1');
      writeFileSync(join(dirs.memory, 'memory.limit_in_bytes'), '-1');
    }
    if (dirs.cpu && this.limited.has('cpuPercent')) writeFileSync(join(dirs.cpu, 'cpu.cfs_quota_us'), '-1');
    if (dirs.pids && this.limited.has('maxProcesses')) writeFileSync(join(dirs.pids, 'pids.max'), 'max');
    this.limited.clear();
    this.counted = { oomKills: this.oomKillsTotal(), forkRefusals: this.forkRefusalsTotal() };
  }

  oomKills(): Promise<number> {
    return Promise.resolve(this.oomKillsTotal() - this.counted.oomKills);
  }

  forkRefusals(): Promise<number> {
    return Promise.resolve(this.forkRefusalsTotal() - this.counted.forkRefusals);
  }

  private oomKillsTotal(): number {
    return this.dirs.memory ? readKeyed(join(this.dirs.memory, 'memory.oom_control'), 'oom_kill') : 0;
  }

  private forkRefusalsTotal(): number {
    // v1 counts a refused fork in the forking process's own group, whichever ancestor's limit refused it.
    return this.dirs.pids ? readKeyed(join(this.dirs.pids, 'pids.events'), 'max') : 0;
  }

  cpuUsageNs(): Promise<number> {
    return Promise.resolve(this.dirs.cpuacct ? readNumber(join(this.dirs.cpuacct, 'cpuacct.usage')) : 0);
  }

  memoryBytes(): Promise<number> {
    return Promise.resolve(this.dirs.memory ? readKeyed(join(this.dirs.memory, 'memory.stat'), 'total_rss') : 0);
  }

  async destroy(): Promise<void> {
    await killProcsIn(this.firstProcsFile);
    await Promise.all(Object.values(this.dirs).map((dir) => destroyTree(dir)));
  }
}

class CgroupV2 implements Cgroup {
  private readonly kills = new OneKillAtATime();
  /** OOM kills counted when the group was last renewed. */
  private countedOomKills = 0;
  /** The limits of its own the group has been given since it was made or renewed. */
  private readonly limited = new Set<keyof CgroupLimits>();

  constructor(
    readonly name: string,
    private readonly dir: string,
    /** The controllers passed on to children: those set-up enabled (one not delegated would make the kernel refuse them all). */
    private readonly controllers: readonly string[] = LIMIT_CONTROLLERS,
    private readonly moves: CgroupMoves = 'slow',
  ) {}

  get procsFiles(): string[] {
    return [join(this.dir, 'cgroup.procs')];
  }

  async child(name: string, limits: CgroupLimits): Promise<Cgroup> {
    const dir = join(this.dir, name);
    await mkdir(dir, { recursive: true });
    // Children get the controllers only when a group's subtree_control lists them.
    try {
      writeFileSync(join(dir, 'cgroup.subtree_control'), this.controllers.map((c) => `+${c}`).join(' '));
    } catch {
      // a leaf that cannot pass them on: its own limits still hold
    }
    const group = new CgroupV2(name, dir, this.controllers, this.moves);
    await group.setLimits(limits);
    return group;
  }

  setLimits(limits: CgroupLimits): Promise<void> {
    const dir = this.dir;
    for (const [name, value] of Object.entries(limits)) if (value) this.limited.add(name as keyof CgroupLimits);
    if (limits.memoryBytes) {
      writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
      if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
    }
    if (limits.cpuPercent) writeFileSync(join(dir, 'cpu.max'), `${cpuQuotaUs(limits.cpuPercent)} ${CPU_PERIOD_US}`);
    if (limits.maxProcesses) writeFileSync(join(dir, 'pids.max'), String(limits.maxProcesses));
    return Promise.resolve();
  }

  rename(name: string): Promise<Cgroup> {
    const dir = join(dirname(this.dir), name);
    renameSync(this.dir, dir);
    return Promise.resolve(new CgroupV2(name, dir, this.controllers, this.moves));
  }

  addProcess(pid: number): Promise<void> {
    return moveInto(this.procsFiles, pid, this.moves);
  }

  holds(pid: number): boolean {
    return listsPid(join(this.dir, 'cgroup.procs'), pid);
  }

  pids(): number[] {
    return pidsIn(join(this.dir, 'cgroup.procs'));
  }

  killProcesses(): Promise<boolean> {
    return this.kills.run(async () => {
      if (readText(join(this.dir, 'cgroup.procs')) === '') return true;
      await writeFile(join(this.dir, 'cgroup.kill'), '1').catch(() => undefined);
      return killProcsIn(this.procsFiles);
    });
  }

  renew(): void {
    if (this.limited.has('memoryBytes')) writeFileSync(join(this.dir, 'memory.max'), 'max');
    if (this.limited.has('cpuPercent')) writeFileSync(join(this.dir, 'cpu.max'), `max ${CPU_PERIOD_US}`);
    if (this.limited.has('maxProcesses')) writeFileSync(join(this.dir, 'pids.max'), 'max');
    this.limited.clear();
    this.countedOomKills = readKeyed(join(this.dir, 'memory.events'), 'oom_kill');
  }

  oomKills(): Promise<number> {
    return Promise.resolve(readKeyed(join(this.dir, 'memory.events'), 'oom_kill') - this.countedOomKills);
  }

  forkRefusals(): Promise<number> {
    // v2 counts a refused fork where the limit is (the session's group) and above, never in a
    // task group without a limit of its own: a task cannot be told apart from its session's others.
    return Promise.resolve(0);
  }

  cpuUsageNs(): Promise<number> {
    return Promise.resolve(readKeyed(join(this.dir, 'cpu.stat'), 'usage_usec') * 1000);
  }

  memoryBytes(): Promise<number> {
    return Promise.resolve(readKeyed(join(this.dir, 'memory.stat'), 'anon'));
  }

  async destroy(): Promise<void> {
    await writeFile(join(this.dir, 'cgroup.kill'), '1').catch(() => undefined);
    await killProcsIn(this.procsFiles);
    await destroyTree(this.dir);
  }
}

/**
 * A group that exists at `where` (v1: its directory in each hierarchy; v2: its one directory):
 * how set-up and the unit tests (over a directory tree standing in for cgroupfs) reach the classes.
 */
export function existingCgroup(version: 'v1', name: string, where: Partial<Record<V1Controller, string>>): Cgroup;
export function existingCgroup(version: 'v2', name: string, where: string): Cgroup;
export function existingCgroup(version: 'v1' | 'v2', name: string, where: Partial<Record<V1Controller, string>> | string): Cgroup {
  return version === 'v1' ? new CgroupV1(name, where as Partial<Record<V1Controller, string>>) : new CgroupV2(name, where as string);
}

/** Removes a group and every group below it, deepest first. */
async function destroyTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  await Promise.all(entries.filter((e) => e.isDirectory()).map((e) => destroyTree(join(dir, e.name))));
  await killProcsIn([join(dir, 'cgroup.procs')]);
  await removeDir(dir);
}

/** Removes subtrees that earlier worker processes left (their pid no longer runs). */
async function removeStaleSubtrees(parent: string): Promise<void> {
  const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const pid = /^codegen-(\d+)$/.exec(entry.name)?.[1];
    if (!entry.isDirectory() || pid === undefined || Number(pid) === process.pid) continue;
    if (await pathExists(`/proc/${pid}`)) continue;
    await destroyTree(join(parent, entry.name)).catch(() => undefined);
  }
}

/**
 * Finds where this worker's cgroups go (cgroupDelegation.ts), makes its subtree there, and says
 * which limit controllers it has and why any is missing. Undefined when there is no cgroupfs.
 */
export async function setUpCgroups(moves: CgroupMoves = 'slow'): Promise<CgroupSupport | undefined> {
  const name = `codegen-${process.pid}`;
  const [self, mountinfo] = await Promise.all([readFile('/proc/self/cgroup', 'utf8'), readFile('/proc/self/mountinfo', 'utf8')]);
  const delegated = existsSync('/sys/fs/cgroup/cgroup.controllers') ? await delegatedGroups(ownV2Groups(self, mountinfo)) : new Set<string>();
  const placement = delegateCgroups(hostCgroupFs(delegated), self, mountinfo);
  if (!placement) return undefined;
  const missing = [...placement.missing];
  const lose = (controllers: readonly string[], why: string) => {
    for (const controller of LIMIT_CONTROLLERS)
      if (controllers.includes(controller) && !missing.some((m) => m.controller === controller)) missing.push({ controller, why });
  };
  if (placement.version === 'v2') {
    const parent = placement.parents.unified!;
    try {
      await removeStaleSubtrees(parent);
      const root = await new CgroupV2('', parent, placement.controllers, moves).child(name, {});
      return { version: 'v2', controllers: placement.controllers, missing, root, movedInto: placement.movedInto };
    } catch (err) {
      lose(LIMIT_CONTROLLERS, `cannot make the worker's cgroup in ${parent} (${messageOf(err)})`);
      return { version: 'v2', controllers: [], missing, root: undefined };
    }
  }
  const dirs: Partial<Record<V1Controller, string>> = {};
  for (const [hierarchy, parent] of Object.entries(placement.parents) as [V1Controller, string][]) {
    try {
      await removeStaleSubtrees(parent);
      // Not recursive: the parent exists, and a read-only cgroupfs then says EROFS, not ENOENT.
      // One of this pid's may exist (a worker restarted in its container with the same pid).
      if (!existsSync(join(parent, name))) mkdirSync(join(parent, name));
      dirs[hierarchy] = join(parent, name);
    } catch (err) {
      lose([hierarchy], `cannot make the worker's cgroup in ${parent} (${messageOf(err)})`);
    }
  }
  const controllers = LIMIT_CONTROLLERS.filter((c) => c in dirs);
  return { version: 'v1', controllers, missing, root: Object.keys(dirs).length > 0 ? new CgroupV1(name, dirs, moves) : undefined };
}
