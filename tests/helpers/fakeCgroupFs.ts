import { dirname, basename } from 'node:path';
import type { CgroupFs } from '../../src/sandbox/confine/cgroupDelegation.js';

/**
 * A cgroup v2 tree in memory, with the kernel's rules set-up runs into:
 * - a group's cgroup.controllers are its parent's cgroup.subtree_control (the root's are given);
 * - enabling a domain controller (memory) for children of a non-root group that holds processes
 *   is EBUSY (the no-internal-processes rule; cpu and pids are threaded and may be enabled);
 * - a process cannot move into a non-root group that passes domain controllers on (EBUSY);
 * - enabling a controller the group does not have is ENOENT; any write on a read-only tree EROFS.
 * `realRoot: false` is a cgroup namespace's root (a container's): it has cgroup.type and no exemption.
 */
export class FakeCgroupV2Fs implements CgroupFs {
  private readonly groups = new Map<string, { subtree: Set<string>; procs: Set<number> }>();
  readOnly = false;
  /** Groups systemd delegated (their delegate xattr set). */
  readonly delegatedGroups = new Set<string>();
  /** Called before each subtree_control write (a process joining meanwhile, as an exec would). */
  beforeEnable: (group: string) => void = () => undefined;

  constructor(
    readonly base: string,
    private readonly rootControllers: string[],
    private readonly realRoot: boolean,
  ) {
    this.groups.set(base, { subtree: new Set(), procs: new Set() });
  }

  /** Makes `path` (and its parents) with the controllers passed down to it, holding `procs`. */
  group(path: string, procs: number[] = [], passedDown = this.rootControllers): this {
    let at = this.base;
    for (const part of path.slice(this.base.length).split('/').filter(Boolean)) {
      const parent = this.groups.get(at)!;
      for (const c of passedDown) parent.subtree.add(c);
      at = `${at}/${part}`;
      if (!this.groups.has(at)) this.groups.set(at, { subtree: new Set(), procs: new Set() });
    }
    for (const pid of procs) this.place(pid, at);
    return this;
  }

  procs(path: string): number[] {
    return [...(this.groups.get(path)?.procs ?? [])];
  }

  subtreeControl(path: string): string[] {
    return [...(this.groups.get(path)?.subtree ?? [])].sort();
  }

  /** Adds a process to `path` behind the rules' back (what a container runtime's exec does). */
  join(pid: number, path: string): void {
    this.place(pid, path);
  }

  exists(path: string): boolean {
    if (this.groups.has(path)) return true;
    const group = this.groups.get(dirname(path));
    if (!group) return false;
    const file = basename(path);
    if (file === 'cgroup.type') return dirname(path) !== this.base || !this.realRoot;
    return ['cgroup.controllers', 'cgroup.subtree_control', 'cgroup.procs'].includes(file);
  }

  read(path: string): string {
    const dir = dirname(path);
    const group = this.groups.get(dir);
    if (!group || !this.exists(path)) throw errno('ENOENT', path);
    switch (basename(path)) {
      case 'cgroup.controllers':
        return `${this.controllersOf(dir).join(' ')}\n`;
      case 'cgroup.subtree_control':
        return `${[...group.subtree].join(' ')}\n`;
      case 'cgroup.procs':
        return [...group.procs].map((p) => `${p}\n`).join('');
      default:
        return 'domain\n';
    }
  }

  write(path: string, text: string): void {
    if (this.readOnly) throw errno('EROFS', path);
    const dir = dirname(path);
    const group = this.groups.get(dir);
    if (!group) throw errno('ENOENT', path);
    const isRoot = dir === this.base && this.realRoot;
    if (basename(path) === 'cgroup.procs') {
      if (!isRoot && group.subtree.has('memory')) throw errno('EBUSY', path);
      const pid = Number(text.trim());
      if (![...this.groups.values()].some((g) => g.procs.has(pid))) throw errno('ESRCH', path);
      return this.place(pid, dir);
    }
    if (basename(path) !== 'cgroup.subtree_control') throw errno('EACCES', path);
    this.beforeEnable(dir);
    const asked = text.split(/\s+/).filter(Boolean);
    for (const change of asked) if (!this.controllersOf(dir).includes(change.slice(1))) throw errno('ENOENT', path);
    const enablesDomain = asked.some((c) => c === '+memory');
    if (enablesDomain && !isRoot && group.procs.size > 0) throw errno('EBUSY', path);
    for (const change of asked) {
      if (change.startsWith('+')) group.subtree.add(change.slice(1));
      else group.subtree.delete(change.slice(1));
    }
  }

  delegated(path: string): boolean {
    return this.delegatedGroups.has(path);
  }

  mkdir(path: string): void {
    if (this.readOnly) throw errno('EROFS', path);
    if (!this.groups.has(dirname(path))) throw errno('ENOENT', path);
    if (!this.groups.has(path)) this.groups.set(path, { subtree: new Set(), procs: new Set() });
  }

  private controllersOf(dir: string): string[] {
    return dir === this.base ? this.rootControllers : [...(this.groups.get(dirname(dir))?.subtree ?? [])];
  }

  private place(pid: number, dir: string): void {
    for (const g of this.groups.values()) g.procs.delete(pid);
    this.groups.get(dir)!.procs.add(pid);
  }
}

/** A v1 layout: which hierarchies are mounted under `base` (only existence matters to placement). */
export function fakeV1Fs(base: string, mounted: string[]): CgroupFs {
  return {
    exists: (path) => mounted.some((h) => path === `${base}/${h}/cgroup.procs`),
    read: (path) => {
      throw errno('ENOENT', path);
    },
    write: (path) => {
      throw errno('EACCES', path);
    },
    mkdir: () => undefined,
    delegated: () => false,
  };
}

function errno(code: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}
