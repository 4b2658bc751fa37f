import { readdir, readFile } from 'node:fs/promises';
import { statFields } from './procfs.js';

/**
 * Finding and ending every process a task started. A task's processes are its root's
 * descendants plus anything carrying the task's marker in its environment: a grandchild that
 * daemonised (setsid, double fork) is re-parented away from the tree but keeps the marker.
 */

/** The environment variable that tags every process of one task. */
export const TASK_MARKER_VARIABLE = 'CODEGEN_TASK_MARKER';

// Linux reports CPU time in clock ticks; 100 per second on every platform Node supports here.
const CLOCK_TICKS_PER_SECOND = 100;

interface ProcStat {
  pid: number;
  ppid: number;
  state: string;
  cpuTicks: number;
  startTicks: number;
  rssPages: number;
}

async function readStat(pid: number): Promise<ProcStat | undefined> {
  try {
    const fields = statFields(await readFile(`/proc/${pid}/stat`, 'latin1'));
    const [state] = fields;
    if (state === undefined || fields.length < 22) return undefined; // no stat line as the kernel writes it
    return {
      pid,
      state,
      ppid: Number(fields[1]),
      cpuTicks: Number(fields[11]) + Number(fields[12]),
      startTicks: Number(fields[19]),
      rssPages: Number(fields[21]),
    };
  } catch {
    return undefined; // gone already
  }
}

async function hasMarker(pid: number, needle: string): Promise<boolean> {
  try {
    const environ = await readFile(`/proc/${pid}/environ`, 'latin1');
    return environ.includes(needle);
  } catch {
    return false;
  }
}

async function allPids(): Promise<number[]> {
  const names = await readdir('/proc');
  return names.filter((n) => /^\d+$/.test(n)).map(Number);
}

/**
 * Live (non-zombie) processes of one task: the tree under rootPid and, unless `treeOnly`,
 * everything marked (which costs reading every process's environment).
 */
export async function listTaskProcesses(rootPid: number | undefined, marker: string, treeOnly = false): Promise<ProcStat[]> {
  const needle = `${TASK_MARKER_VARIABLE}=${marker}\0`;
  const stats = (await Promise.all((await allPids()).map(readStat))).filter((s): s is ProcStat => s !== undefined);
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) {
    const siblings = children.get(s.ppid) ?? [];
    siblings.push(s);
    children.set(s.ppid, siblings);
  }
  const found = new Map<number, ProcStat>();
  const queue = stats.filter((s) => s.pid === rootPid);
  if (!treeOnly) {
    const markedChecks = await Promise.all(stats.map(async (s) => ((await hasMarker(s.pid, needle)) ? s : undefined)));
    for (const s of markedChecks) if (s) queue.push(s);
  }
  while (queue.length > 0) {
    const s = queue.pop()!;
    if (found.has(s.pid) || s.pid === process.pid) continue;
    found.set(s.pid, s);
    queue.push(...(children.get(s.pid) ?? []));
  }
  return [...found.values()].filter((s) => s.state !== 'Z' && s.state !== 'X');
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone, or not ours to signal
  }
}

/**
 * SIGKILLs the task's process group and every process listTaskProcesses finds, rescanning
 * until none is left (a process may fork while we scan).
 */
export async function killTaskProcesses(rootPid: number | undefined, marker: string): Promise<void> {
  if (rootPid !== undefined) signal(-rootPid, 'SIGKILL');
  for (let round = 0; round < 20; round++) {
    const live = await listTaskProcesses(rootPid, marker);
    if (live.length === 0) return;
    for (const s of live) signal(s.pid, 'SIGSTOP'); // freeze first so nothing forks between kills
    for (const s of live) signal(s.pid, 'SIGKILL');
    if (rootPid !== undefined) signal(-rootPid, 'SIGKILL');
  }
}

export interface ProcessUsage {
  memoryBytes: number;
  cpuPercent: number;
}

const PAGE_SIZE = 4096;

/** Resident memory and CPU share (averaged over each process's life) of the processes under rootPids. */
export async function measureProcessTrees(rootPids: number[]): Promise<ProcessUsage> {
  const live = (await Promise.all(rootPids.map((pid) => listTaskProcesses(pid, '', true)))).flat();
  if (live.length === 0) return { memoryBytes: 0, cpuPercent: 0 };
  const uptimeSeconds = Number((await readFile('/proc/uptime', 'latin1')).split(' ')[0]);
  let memoryBytes = 0;
  let cpuPercent = 0;
  for (const s of live) {
    memoryBytes += s.rssPages * PAGE_SIZE;
    const aliveSeconds = Math.max(uptimeSeconds - s.startTicks / CLOCK_TICKS_PER_SECOND, 0.01);
    cpuPercent += (100 * s.cpuTicks) / CLOCK_TICKS_PER_SECOND / aliveSeconds;
  }
  return { memoryBytes, cpuPercent };
}
