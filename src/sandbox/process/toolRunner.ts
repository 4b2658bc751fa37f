import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * The worker's end of toolRunner.py (its head gives both ends of the protocol): host tools run by
 * a small Python process, started on first use and again if it dies, instead of by the worker.
 * libuv starts a process by forking the worker whole: at 100 MB of heap that held the event loop
 * 8 ms a tool, and a session's making runs several.
 */

const SOURCE = readFileSync(new URL('../../../../src/sandbox/process/toolRunner.py', import.meta.url), 'utf8');

/** How a tool ended. */
export interface ToolOutcome {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

interface Reply extends Partial<ToolOutcome> {
  id: number | null;
  error?: string;
}

export class ToolRunner {
  private child: ChildProcessWithoutNullStreams | undefined;
  /** Set once the runner could not be started (no python3): tools are then the caller's to start. */
  private unavailable = false;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (outcome: ToolOutcome | undefined) => void; reject: (err: Error) => void }>();

  constructor(private readonly env: Readonly<Record<string, string>>) {}

  /** Runs `argv` with `input` on its stdin; how it ended, or undefined where there is no runner (the caller runs it). */
  async run(argv: string[], input: string, timeoutMs: number): Promise<ToolOutcome | undefined> {
    const child = this.started();
    if (!child) return undefined;
    const id = this.nextId++;
    // Held while a tool runs (the worker waits for it, as for a child of its own), let go when none does.
    if (this.waiting.size === 0) holdOpen(child, true);
    try {
      return await new Promise<ToolOutcome | undefined>((resolve, reject) => {
        this.waiting.set(id, { resolve, reject });
        child.stdin.write(`${JSON.stringify({ id, argv, input, timeout_ms: timeoutMs })}\n`);
      });
    } finally {
      if (this.waiting.size === 0 && this.child === child) holdOpen(child, false);
    }
  }

  private started(): ChildProcessWithoutNullStreams | undefined {
    if (this.child || this.unavailable) return this.child;
    // Its own process group: a Ctrl-C to the worker's reaches neither it nor its tools.
    const child = spawn('python3', ['-I', '-S', '-c', SOURCE, JSON.stringify(this.env)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...this.env },
      detached: true,
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.stdin.on('error', () => undefined);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      const waiter = reply.id === null ? undefined : this.waiting.get(reply.id);
      if (!waiter || reply.id === null) return;
      this.waiting.delete(reply.id);
      if (reply.error !== undefined) waiter.reject(new Error(reply.error));
      else waiter.resolve({ code: reply.code ?? null, signal: reply.signal ?? null, stdout: reply.stdout ?? '', stderr: reply.stderr ?? '' });
    });
    const ended = (why: string, unavailable = false) => {
      if (this.child !== child) return;
      this.child = undefined;
      const waiting = [...this.waiting.values()];
      this.waiting.clear();
      // Never started (no python3 here): what was asked is run by the caller instead.
      if (unavailable) for (const waiter of waiting) waiter.resolve(undefined);
      else for (const waiter of waiting) waiter.reject(new Error(`the tool runner ${why}${stderr ? `: ${stderr.trim()}` : ''}`));
    };
    child.on('exit', (code, signal) => ended(`exited (${signal ?? `code ${code}`})`));
    child.on('error', (err) => {
      this.unavailable = (err as NodeJS.ErrnoException).code === 'ENOENT';
      ended(`could not run (${err.message})`, this.unavailable);
    });
    holdOpen(child, false);
    this.child = child;
    return child;
  }
}

/** Whether the runner keeps the worker's event loop alive: only while a tool it runs is awaited. */
function holdOpen(child: ChildProcessWithoutNullStreams, hold: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as { ref(): void; unref(): void }[]) {
    if (hold) handle.ref();
    else handle.unref();
  }
}
