import { readFileSync } from 'node:fs';

/**
 * What the worker reads of /proc about a process, in one place: the fields of its stat and status
 * files, its children, how an unreaped child ended. The parsers take the files' text; the readers
 * give undefined (or nothing) for a process that is gone.
 */

/**
 * The fields of a /proc/<pid>/stat line from the state on (field 3 of proc(5) at index 0): the
 * command name before them may hold spaces and parentheses, so they start after its last ')'.
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** A line of /proc/<pid>/status ("Uid", "PPid", "NSpid"…) as numbers; [] when it has none. */
export function statusNumbers(status: string, name: string): number[] {
  return new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status)?.[1]?.trim().split(/\s+/).map(Number) ?? [];
}

// procfs answers from memory: the readers below are synchronous, as they sit on every warm call's path.
function readProcFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export interface ProcStatus {
  /** Real uid. */
  uid: number;
  ppid: number;
  /** Its pid in each pid namespace it is in, outermost first. */
  nspid: number[];
}

export function procStatus(pid: number): ProcStatus | undefined {
  const text = readProcFile(`/proc/${pid}/status`);
  if (text === undefined) return undefined;
  return { uid: statusNumbers(text, 'Uid')[0] ?? -1, ppid: statusNumbers(text, 'PPid')[0] ?? -1, nspid: statusNumbers(text, 'NSpid') };
}

/** A process's cgroups, as /proc/<pid>/cgroup lists them; undefined when it is gone. */
export function cgroupsOf(pid: number): string | undefined {
  return readProcFile(`/proc/${pid}/cgroup`);
}

/** A process's state letter (R, S, D, T, t, Z, …); undefined when it is gone. */
export function processState(pid: number): string | undefined {
  const stat = readProcFile(`/proc/${pid}/stat`);
  return stat === undefined ? undefined : statFields(stat)[0];
}

/**
 * The wait status of an exited, unreaped child (a zombie): field 52 of its stat, readable by
 * root. Undefined when the child is gone or still running.
 */
export function zombieWaitStatus(pid: number): number | undefined {
  const stat = readProcFile(`/proc/${pid}/stat`);
  const fields = stat === undefined ? [] : statFields(stat);
  const status = Number(fields[49]);
  return fields[0] === 'Z' && Number.isInteger(status) ? status : undefined;
}

/** A process's children (its main thread's: the zygote and bwrap are single-threaded). */
export function childrenOf(parent: number): number[] {
  return (readProcFile(`/proc/${parent}/task/${parent}/children`) ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
}

/**
 * The child of `parent` that is `nsPid` in its own pid namespace. Newest first: the kernel lists
 * children in the order they were made, and the one sought was usually made last.
 */
export function childByNamespacePid(parent: number, nsPid: number): number | undefined {
  return namespaceChild(parent, nsPid)?.pid;
}

/** childByNamespacePid with the status it read of that child (no second read for its uid and parent). */
export function namespaceChild(parent: number, nsPid: number): { pid: number; status: ProcStatus } | undefined {
  for (const pid of childrenOf(parent).reverse()) {
    const status = procStatus(pid);
    if (status?.nspid[status.nspid.length - 1] === nsPid) return { pid, status };
  }
  return undefined;
}
