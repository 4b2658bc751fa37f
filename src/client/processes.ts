import type { TaskExecutionClient } from '../../gen/codegen/v1/task_execution.js';
import { ClientError, Status } from 'nice-grpc';
import type { WorkerCallOptions } from './createWorkerClient.js';
import { callTool, outputsOf, type ToolCallOptions } from './toolCall.js';

/** A background process as proc.list lists it. */
export interface ProcessInfo {
  processId: string;
  command: string;
  /** Its pid in its own sandbox (0 when it ended before it could be seen). */
  pid: number;
  startedAtMs: number;
  running: boolean;
  /** Once it exited: its exit code (128+N when signal N ended it). */
  exitCode: number | null;
  /** Once it exited, when a limit (`memory`, `pids`) or a signal sent to it (`signal`) ended it. */
  killedBy: string | null;
  pty: boolean;
}

/** How a background process ended. */
export interface ProcessExit {
  exitCode: number;
  killedBy?: string;
}

/** Where a background process's output goes as it comes: each call is a piece of one stream, exactly as printed. */
export interface OutputHandlers {
  onStdout?: (text: string) => void;
  /** A terminal's (`pty`) output is all stdout. */
  onStderr?: (text: string) => void;
}

export interface StartOptions extends OutputHandlers {
  /** A directory in the workspace to start in (default: the workspace root). */
  cwd?: string;
  /** A terminal of its own: `true` (24×80) or its size. */
  pty?: boolean | { rows: number; cols: number };
}

/** What proc.output read: `output` runs from byte offset `since` to `next`. */
export interface OutputRead {
  output: string;
  since: number;
  next: number;
  /** The offset of the oldest byte the worker still keeps. */
  oldest: number;
  running: boolean;
  exit?: ProcessExit;
}

/**
 * A session's background processes (run.shell `background`, the proc tools): processes that
 * outlive the task that started them. A refused call rejects with the worker's ClientError
 * (NOT_FOUND for an unknown process, FAILED_PRECONDITION for one that exited, …).
 */
export class Processes {
  constructor(
    private readonly tasks: TaskExecutionClient<WorkerCallOptions>,
    readonly sessionId: string,
  ) {}

  /**
   * Starts `command` (a `/bin/sh -c` line) in the background. With `onStdout`/`onStderr` its
   * output is followed from its first byte, and `wait()` resolves when it exits.
   */
  async start(command: string, options: StartOptions = {}): Promise<BackgroundProcess> {
    const args: Record<string, string> = { command, background: 'true' };
    if (options.cwd !== undefined) args.cwd = options.cwd;
    if (options.pty) {
      args.pty = 'true';
      if (typeof options.pty === 'object') Object.assign(args, { rows: String(options.pty.rows), cols: String(options.pty.cols) });
    }
    const outputs = await this.call('run.shell', args);
    const started = new BackgroundProcess(this, outputs.process_id!, Number(outputs.pid));
    if (options.onStdout || options.onStderr) void started.follow(options); // wait() resolves (or rejects) with it
    return started;
  }

  /** The session's background processes, running and exited, oldest first. */
  async list(): Promise<ProcessInfo[]> {
    const listed = JSON.parse((await this.call('proc.list', {})).processes_json ?? '[]') as Record<string, unknown>[];
    return listed.map((p) => ({
      processId: p.process_id as string,
      command: p.command as string,
      pid: p.pid as number,
      startedAtMs: p.started_at_ms as number,
      running: p.running as boolean,
      exitCode: p.exit_code as number | null,
      killedBy: p.killed_by as string | null,
      pty: p.pty as boolean,
    }));
  }

  /** A handle on a process started earlier (by id; no call is made). */
  get(processId: string, pid = 0): BackgroundProcess {
    return new BackgroundProcess(this, processId, pid);
  }

  /** Runs a proc tool to its end (toolCall.ts): its outputs, its log messages to `onLog`; a refusal rejects with its ClientError. */
  call(toolName: string, args: Record<string, string>, options: ToolCallOptions = {}): Promise<Record<string, string>> {
    return callTool(this.tasks, this.sessionId, toolName, args, options);
  }
}

/** One background process of a session. */
export class BackgroundProcess {
  private following: Promise<ProcessExit | undefined> | undefined;

  constructor(
    private readonly processes: Processes,
    readonly processId: string,
    /** Its pid in its own sandbox (a terminal's helper's, with `pty`). */
    readonly pid: number,
  ) {}

  /** What it printed from byte offset `since` (default: the oldest byte kept), both streams as they came. */
  async output(since = 0): Promise<OutputRead> {
    const o = await this.processes.call('proc.output', { process_id: this.processId, since: String(since) });
    return { output: o.output ?? '', since: Number(o.since), next: Number(o.next), oldest: Number(o.oldest), running: o.running === 'true', exit: exitOf(o) };
  }

  /**
   * Its output from byte offset `since` (default 0) as it comes, to the handlers, until it exits
   * (resolves how) or `signal` aborts (resolves undefined); the process runs on either way.
   */
  follow(options: OutputHandlers & { since?: number; signal?: AbortSignal } = {}): Promise<ProcessExit | undefined> {
    const followed = this.followed(options);
    if (!options.signal) this.following ??= followed;
    followed.catch(() => undefined); // wait() or the caller sees it; never an unhandled rejection
    return followed;
  }

  /**
   * Follows in as many tasks as it takes: one the worker ends at its timeout (the session's or
   * WORKER_MAX_TASK_TIMEOUT_SECONDS) is followed by another from where it stopped.
   */
  private async followed(options: OutputHandlers & { since?: number; signal?: AbortSignal }): Promise<ProcessExit | undefined> {
    let since = options.since ?? 0;
    let got = 0;
    const onLog = (source: string, message: string) => {
      got += Buffer.byteLength(message);
      (source === 'stderr' ? options.onStderr : options.onStdout)?.(message);
    };
    for (;;) {
      got = 0;
      try {
        const outputs = await this.processes.call(
          'proc.output',
          { process_id: this.processId, since: String(since), follow: 'true' },
          { signal: options.signal, onLog },
        );
        const exit = exitOf(outputs);
        if (exit || outputs.running === 'false') return exit;
        since = Number(outputs.next ?? since + got);
      } catch (err) {
        if (options.signal?.aborted) return undefined;
        if (!(err instanceof ClientError) || err.code !== Status.DEADLINE_EXCEEDED) throw err;
        const outputs = outputsOf(err);
        since = outputs?.next !== undefined && outputs.next !== '' ? Number(outputs.next) : since + got;
      }
    }
  }

  /** Resolves when it exits (with how); the output followed since start, when handlers were given there. */
  async wait(): Promise<ProcessExit> {
    const exit = await (this.following ?? this.follow());
    if (!exit) throw new Error(`process ${this.processId}: its output stopped being followed before it exited`);
    return exit;
  }

  /** Writes to its standard input (its terminal, with `pty`); `eof` ends the input after `data`. */
  async sendStdin(data: string | Uint8Array, options: { eof?: boolean } = {}): Promise<void> {
    const args: Record<string, string> = { process_id: this.processId };
    if (typeof data === 'string') args.data = data;
    else Object.assign(args, { data: Buffer.from(data).toString('base64'), encoding: 'base64' });
    if (options.eof) args.eof = 'true';
    await this.processes.call('proc.stdin', args);
  }

  /** Ends its standard input (a terminal's: ^D). */
  async closeStdin(): Promise<void> {
    await this.sendStdin('', { eof: true });
  }

  /** Sends `signal` (`TERM`, `INT`, `HUP`, `KILL`, …) to every process of it. */
  async signal(signal: string): Promise<void> {
    await this.processes.call('proc.signal', { process_id: this.processId, signal });
  }

  async kill(): Promise<void> {
    await this.signal('KILL');
  }

  /** Resizes its terminal (`pty` processes); it gets SIGWINCH. */
  async resize(rows: number, cols: number): Promise<void> {
    await this.processes.call('proc.resize', { process_id: this.processId, rows: String(rows), cols: String(cols) });
  }
}

function exitOf(outputs: Record<string, string>): ProcessExit | undefined {
  if (outputs.exit_code === undefined) return undefined;
  return { exitCode: Number(outputs.exit_code), ...(outputs.killed_by ? { killedBy: outputs.killed_by } : {}) };
}
