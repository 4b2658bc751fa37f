import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { ReadPacer, readOnlyWhenAsked } from '../process/pacedReads.js';
import { errors } from '../../errors.js';
import type { Cgroup } from '../confine/cgroups.js';
import { exitCodeOf } from '../process/outputCapture.js';
import { OutputRing } from '../process/outputRing.js';
import { childrenOf, procStatus } from '../process/procfs.js';
import type { OutputSource, ProcessSpec } from '../process/processSpec.js';
import { startProcess } from '../process/runProcess.js';

/**
 * A session's background processes: commands started by one task that go on running after it
 * (run.shell with background), each in a sandbox of its own made as a cold call's is, in a
 * cgroup of its own below the session's (so the session's limits count it and destroying the
 * session ends it), its stdin open and its output kept in a bounded ring. They end with the
 * worker (a restart starts none again): the registry is in memory.
 */

export interface BackgroundOptions {
  /** Running at once per session; past it a start is RESOURCE_EXHAUSTED. */
  maxRunning: number;
  /** Output kept per process (both streams), the oldest bytes first to go. */
  outputBytes: number;
}

/** What proc.list says of one process. */
export interface BackgroundInfo {
  processId: string;
  command: string;
  /** Its pid as the session's processes see it; 0 while not yet known. */
  pid: number;
  startedAtMs: number;
  running: boolean;
  exitCode: number | undefined;
  /** The limit that ended it (memory, pids), or `signal` when proc.signal did. */
  killedBy: string | undefined;
  /** Whether it runs on a terminal (ptyHelper.py). */
  pty: boolean;
}

/** Bytes written to a process's stdin and not yet taken by it, past which a write is refused. */
const MAX_PENDING_STDIN = 1024 * 1024;
/** How long a start waits to learn the command's pid (its sandbox starting). */
const PID_WAIT_MS = 2000;

interface Background {
  info: BackgroundInfo;
  child: ChildProcess;
  group: Cgroup;
  output: OutputRing;
  exited: Promise<void>;
  signalled: boolean;
  /** Settles once both its streams have been read to their end. */
  drained: Promise<unknown>;
}

/** How long a background process's streams may take to end after it and its group are gone. */
const DRAIN_MS = 2000;

/**
 * Reads a stream into the ring, paced (pacedReads.ts) whoever else is busy: a process writing a
 * byte at a time is read at most once per READ_GAP_MS after a burst, each read taking what
 * gathered meanwhile, so it costs the worker's event loop little and the ring few pieces.
 */
async function keep(stream: Readable | null, source: OutputSource, output: OutputRing): Promise<void> {
  if (!stream) return;
  readOnlyWhenAsked(stream);
  const pacer = new ReadPacer(() => true);
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      output.append(source, chunk);
      const paced = pacer.after(1);
      if (paced) await paced;
    }
  } catch {
    // cut off (destroyed): what was read is kept
  }
}

const SIGNALS = new Set(['HUP', 'INT', 'QUIT', 'KILL', 'USR1', 'USR2', 'TERM', 'CONT', 'STOP', 'TSTP', 'WINCH']);

export class BackgroundProcesses {
  private readonly processes = new Map<string, Background>();
  /** Starts under way (their slots taken before the first await, so a burst cannot pass the bound). */
  private starting = 0;
  private disposed = false;

  constructor(
    private readonly options: BackgroundOptions,
    /** The session's cgroup: each process gets a group below it. */
    private readonly session: Cgroup,
    /** The session's uid: signals go to its processes only, never to the sandbox's own (root) ones. */
    private readonly uid: number | undefined,
  ) {}

  /** The signal names proc.signal takes. */
  static readonly signals: ReadonlySet<string> = SIGNALS;

  /**
   * Starts `command` from the spec `launch` makes for its group; resolves once it runs (its pid
   * known, or PID_WAIT_MS passed).
   */
  async start(number: number, command: string, launch: (group: Cgroup) => ProcessSpec, pty = false): Promise<BackgroundInfo> {
    if (this.disposed) throw errors.invalidArgument('the session is being destroyed');
    const running = [...this.processes.values()].filter((p) => p.info.running).length;
    if (running + this.starting >= this.options.maxRunning)
      throw errors.tooLarge(
        `this session already runs its maximum of ${this.options.maxRunning} background processes (WORKER_MAX_BACKGROUND); end one with proc.signal first`,
      );
    const processId = `p${number}`;
    this.starting++;
    let group: Cgroup;
    let child: ChildProcess;
    try {
      group = await this.session.child(`bg-${number}`, {});
      try {
        child = startProcess(launch(group));
      } catch (err) {
        await group.destroy().catch(() => undefined);
        throw err;
      }
    } finally {
      this.starting--;
    }
    const output = new OutputRing(this.options.outputBytes);
    const info: BackgroundInfo = { processId, command, pid: 0, startedAtMs: Date.now(), running: true, exitCode: undefined, killedBy: undefined, pty };
    const drained = Promise.all([keep(child.stdout, 'stdout', output), keep(child.stderr, 'stderr', output)]);
    const record: Background = { info, child, group, output, exited: Promise.resolve(), signalled: false, drained };
    child.stdin?.on('error', () => undefined);
    (child.stdio[4] as Writable | null | undefined)?.on('error', () => undefined);
    record.exited = new Promise<void>((resolve) => {
      child.once('error', () => resolve());
      child.once('exit', (code, signal) => {
        void this.ended(record, exitCodeOf(code, signal)).finally(resolve);
      });
    });
    this.processes.set(processId, record);
    this.forgetExited();
    info.pid = await this.sessionPid(child.pid, record.exited);
    return { ...info };
  }

  list(): BackgroundInfo[] {
    return [...this.processes.values()].map((p) => ({ ...p.info }));
  }

  /** The process's output ring (NOT_FOUND for an unknown id). */
  output(processId: string): { info: BackgroundInfo; output: OutputRing } {
    const p = this.find(processId);
    return { info: { ...p.info }, output: p.output };
  }

  /** Writes to its stdin (and ends it with `eof` once they are taken); resolves once the bytes are buffered within bounds. */
  write(processId: string, data: Buffer, eof: boolean): Promise<void> {
    const p = this.find(processId);
    const stdin = p.child.stdin;
    if (!p.info.running || !stdin || stdin.writableEnded || stdin.destroyed)
      throw errors.processNotRunning(processId, p.info.running ? 'past the end of its input (eof was sent)' : 'no longer running', 'write to its stdin');
    if (stdin.writableLength + data.length > MAX_PENDING_STDIN)
      throw errors.tooLarge(`process ${processId} has not read the ${stdin.writableLength} bytes written to it before; write less, or once it reads`);
    // Buffered within the bound above, never waited on: a process that does not read must not
    // hold the call (nor, behind it, DestroySession).
    if (data.length > 0) stdin.write(data);
    if (eof) stdin.end();
    return Promise.resolve();
  }

  /** Resizes its terminal (FAILED_PRECONDITION for one without, or no longer running). */
  resize(processId: string, rows: number, cols: number): void {
    const p = this.find(processId);
    if (!p.info.pty) throw errors.processNotRunning(processId, 'not on a terminal (start it with pty)', 'resize its terminal');
    if (!p.info.running) throw errors.processNotRunning(processId, 'no longer running', 'resize its terminal');
    const control = p.child.stdio[4] as Writable | null | undefined;
    // A helper that stopped reading (the session can stop it) gets no more than a few sizes queued.
    if (control && control.writableLength > 4096) throw errors.processNotRunning(processId, 'not taking terminal sizes now', 'resize its terminal');
    control?.write(`${rows} ${cols}\n`);
  }

  /** Sends `signal` (a name of SIGNALS) to every process of its group that runs as the session's uid. */
  signal(processId: string, signal: string): void {
    const p = this.find(processId);
    if (!p.info.running) throw errors.processNotRunning(processId, 'no longer running', `send it ${signal}`);
    const number = (constants.signals as Record<string, number | undefined>)[`SIG${signal}`];
    if (number === undefined || !SIGNALS.has(signal)) throw errors.invalidArgument(`unknown signal ${signal}`);
    p.signalled = true;
    if (signal === 'KILL') {
      void p.group.killProcesses();
      return;
    }
    for (const pid of this.sessionPids(p)) {
      try {
        process.kill(pid, number);
      } catch {
        // gone meanwhile
      }
    }
  }

  /** Ends every process (the session's group is removed after, with theirs below it). */
  async dispose(): Promise<void> {
    this.disposed = true;
    await Promise.all(
      [...this.processes.values()].map(async (p) => {
        await p.group.killProcesses().catch(() => undefined);
        p.child.stdin?.destroy();
        await p.exited;
      }),
    );
  }

  private find(processId: string): Background {
    const p = this.processes.get(processId);
    if (!p) throw errors.processNotFound(processId);
    return p;
  }

  private async ended(p: Background, exitCode: number): Promise<void> {
    // What the command left (its children) ends with it, which closes the streams they held; what
    // it printed last is read before the output ends. Its group goes.
    await p.group.killProcesses().catch(() => undefined);
    const cut = setTimeout(() => {
      p.child.stdout?.destroy();
      p.child.stderr?.destroy();
    }, DRAIN_MS);
    await p.drained;
    clearTimeout(cut);
    const [oom, refused] = await Promise.all([p.group.oomKills().catch(() => 0), p.group.forkRefusals().catch(() => 0)]);
    p.info.killedBy = oom > 0 ? 'memory' : refused > 0 && exitCode !== 0 ? 'pids' : p.signalled && exitCode > 128 ? 'signal' : undefined;
    p.info.exitCode = exitCode;
    p.info.running = false;
    p.output.close();
    await p.group.destroy().catch(() => undefined);
    this.forgetExited();
  }

  /** Keeps at most as many exited processes (and their output) as may run at once, the oldest forgotten first. */
  private forgetExited(): void {
    const exited = [...this.processes.values()].filter((p) => !p.info.running);
    for (const p of exited.slice(0, Math.max(0, exited.length - this.options.maxRunning))) this.processes.delete(p.info.processId);
  }

  /** Processes of its group that run as the session's uid (every one, without a uid). */
  private sessionPids(p: Background): number[] {
    const pids = p.group.pids();
    return this.uid === undefined ? pids : pids.filter((pid) => procStatus(pid)?.uid === this.uid);
  }

  /** The command's pid in its sandbox: the first process below `hostPid` that runs as the session's uid. */
  private async sessionPid(hostPid: number | undefined, exited: Promise<void>): Promise<number> {
    if (hostPid === undefined) return 0;
    let gone = false;
    void exited.then(() => (gone = true));
    const deadline = Date.now() + PID_WAIT_MS;
    while (!gone && Date.now() < deadline) {
      const found = this.firstOwnBelow(hostPid, 4);
      if (found !== undefined) return found;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return 0;
  }

  private firstOwnBelow(pid: number, depth: number): number | undefined {
    for (const child of childrenOf(pid)) {
      const status = procStatus(child);
      if (status && (this.uid === undefined || status.uid === this.uid)) return status.nspid[status.nspid.length - 1] ?? child;
      if (depth > 1) {
        const below = this.firstOwnBelow(child, depth - 1);
        if (below !== undefined) return below;
      }
    }
    return undefined;
  }
}
