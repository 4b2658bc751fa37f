import type { Cgroup, CgroupLimits } from '../../src/sandbox/confine/cgroups.js';

/**
 * A cgroup that is only a record of what was asked of it: its limits, kills, removal, and the
 * kernel counters a test sets (OOM kills, refused forks). Children made with child() are listed
 * in `alive` (shared by the family) until destroyed.
 */
export class FakeCgroup implements Cgroup {
  readonly procsFiles: string[];
  limits: CgroupLimits[] = [];
  kills = 0;
  renewals = 0;
  /** Whether killProcesses empties it. */
  empties = true;
  /** How many more times destroy fails (EBUSY: a process that will not die yet). */
  destroyFailures = 0;
  destroyed = false;
  oom = 0;
  refusals = 0;

  constructor(
    readonly name: string,
    readonly alive = new Set<string>(),
  ) {
    this.procsFiles = [`/fake/${name}/cgroup.procs`];
  }
  child(name: string, limits: CgroupLimits = {}): Promise<Cgroup> {
    this.alive.add(name);
    const child = new FakeCgroup(name, this.alive);
    if (Object.keys(limits).length > 0) child.limits.push(limits);
    return Promise.resolve(child);
  }
  setLimits(limits: CgroupLimits): Promise<void> {
    this.limits.push(limits);
    return Promise.resolve();
  }
  rename(name: string): Promise<Cgroup> {
    return Promise.resolve(new FakeCgroup(name, this.alive));
  }
  oomKills = () => Promise.resolve(this.oom);
  forkRefusals = () => Promise.resolve(this.refusals);
  cpuUsageNs = () => Promise.resolve(0);
  memoryBytes = () => Promise.resolve(0);
  /** Pids added, as the group's cgroup.procs would list them. */
  readonly added = new Set<number>();
  addProcess = (pid: number) => {
    this.added.add(pid);
    return Promise.resolve();
  };
  holds = (pid: number) => this.added.has(pid);
  pids = () => [...this.added];
  killProcesses(): Promise<boolean> {
    this.kills++;
    return Promise.resolve(this.empties);
  }
  renew(): void {
    this.renewals++;
  }
  destroy(): Promise<void> {
    if (this.destroyFailures > 0) {
      this.destroyFailures--;
      return Promise.reject(Object.assign(new Error('EBUSY: rmdir'), { code: 'EBUSY' }));
    }
    this.destroyed = true;
    this.alive.delete(this.name);
    return Promise.resolve();
  }
}
