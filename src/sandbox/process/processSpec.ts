import type { PhaseClock } from '../../telemetry/taskPhases.js';
// What a process run is: the spec of what to start, how its output is handled, and what comes
// back. Shared by runProcess and the output capture it drives.

/** What starting and ending a process needs of its task's cgroup (confine/cgroups.ts's Cgroup is one). */
export interface ProcessGroup {
  /** The cgroup.procs files a process writes its pid to, to join the group. */
  readonly procsFiles: string[];
  /** Kills every process in the group, keeping the group; resolves whether it is empty now. */
  killProcesses(): Promise<boolean>;
}

export interface ProcessSpec {
  executable: string;
  args: string[];
  cwd: string;
  /** The whole environment of the process: nothing of the worker's own is added. */
  env: Record<string, string>;
  /** The task marker the process's descendants carry (TASK_MARKER_VARIABLE); made here when absent. */
  marker?: string;
  /** Written to stdin, which is then closed. */
  stdin?: string;
  /** Bytes the process reads on descriptor 3 (a seccomp filter for bubblewrap). */
  filter?: Buffer | undefined;
  /** A pipe the process reads on descriptor 4, kept open (a background process's terminal's resizes). */
  control?: boolean | undefined;
  /**
   * The task's cgroup, which the process joins before anything of the task runs: every process
   * the task starts is in it and none can leave (cgroup.procs is root's), so the task ends by
   * killing the group rather than by finding its marker in every process of the host.
   */
  group?: ProcessGroup | undefined;
}

export type OutputSource = 'stdout' | 'stderr';

export interface RunOptions {
  /** Aborting ends the process and everything it started. */
  signal: AbortSignal;
  /** Marks where the task's time goes (see telemetry/taskPhases.ts). */
  phases?: PhaseClock | undefined;
  /**
   * Settles once the task is recorded on disk: the process is prepared meanwhile, and its code
   * starts only after (a worker killed in between is followed by one reporting the task FAILURE).
   */
  recorded?: Promise<void> | undefined;
  /** Bytes of each stream kept for the result; lines keep flowing to onOutput past it. */
  maxCaptureBytes: number;
  /** Bytes of output (both streams) after which the process is killed; 0 for no limit. */
  maxOutputBytes?: number;
  /**
   * Called with consecutive output lines of one stream as they arrive, joined by newlines (the
   * last one's ending left off), at most once per 20 ms per stream or per 64 Ki characters
   * (outputCoalescer.ts); reading pauses while a full one is pending (backpressure).
   */
  onOutput: (source: OutputSource, text: string) => void | Promise<void>;
  /** Called once the process runs, with what identifies its processes (for usage sampling). */
  onStart?: (running: RunningProcess) => void;
  /** Whether reading the output of a process printing small pieces fast is paced now (pacedReads.ts); never when absent. */
  pacedReads?: (() => boolean) | undefined;
}

export interface RunningProcess {
  pid: number;
  marker: string;
}

export interface CapturedOutput {
  text: string;
  truncated: boolean;
}

export interface ProcessResult {
  /** The exit code; 128+N for a process killed by signal N. */
  exitCode: number;
  stdout: CapturedOutput;
  stderr: CapturedOutput;
  /** The process was killed for printing more than maxOutputBytes. */
  outputLimitExceeded: boolean;
  /** No process could be made for the call: the session was at its process limit. */
  forkRefused?: boolean;
}

/** A session's limits (0: none). */
export interface SessionLimits {
  maxMemoryMb: number;
  maxCpuPercent: number;
  maxDiskMb: number;
}

/** What one task may narrow (0: the session's). */
export interface TaskLimits {
  maxMemoryMb?: number | undefined;
  maxCpuPercent?: number | undefined;
}

export type KilledBy = 'memory' | 'cpu' | 'disk' | 'output' | 'pids';

export interface SandboxedResult extends ProcessResult {
  /** Which limit ended the process, when one did. */
  killedBy: KilledBy | undefined;
}
