import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { killTaskProcesses, TASK_MARKER_VARIABLE } from './processTree.js';

export interface ProcessSpec {
  executable: string;
  args: string[];
  cwd: string;
  /** The whole environment of the process: nothing of the worker's own is added. */
  env: Record<string, string>;
  /** Written to stdin, which is then closed. */
  stdin?: string;
}

export type OutputSource = 'stdout' | 'stderr';

export interface RunOptions {
  /** Aborting ends the process and everything it started. */
  signal: AbortSignal;
  /** Bytes of each stream kept for the result; lines keep flowing to onLine past it. */
  maxCaptureBytes: number;
  /** Bytes of output (both streams) after which the process is killed; 0 for no limit. */
  maxOutputBytes?: number;
  /** Called for each output line as it arrives; reading pauses until it resolves (backpressure). */
  onLine: (source: OutputSource, line: string) => void | Promise<void>;
  /** Called once the process runs, with what identifies its processes (for usage sampling). */
  onStart?: (running: RunningProcess) => void;
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
}

/** Longest line passed to onLine; longer runs without a newline are passed in pieces. */
const MAX_LINE_CHARS = 64 * 1024;

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGXCPU: 24, SIGXFSZ: 25 };

async function pump(stream: Readable, source: OutputSource, options: RunOptions, counted: (bytes: number) => void): Promise<CapturedOutput> {
  const decoder = new StringDecoder('utf8');
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let truncated = false;
  let pending = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    counted(chunk.length);
    if (keptBytes < options.maxCaptureBytes) {
      const room = options.maxCaptureBytes - keptBytes;
      kept.push(chunk.length <= room ? chunk : chunk.subarray(0, room));
      keptBytes += Math.min(chunk.length, room);
      if (chunk.length > room) truncated = true;
    } else if (chunk.length > 0) {
      truncated = true;
    }
    pending += decoder.write(chunk);
    let newline: number;
    while ((newline = pending.indexOf('\n')) !== -1) {
      await options.onLine(source, pending.slice(0, newline).replace(/\r$/, ''));
      pending = pending.slice(newline + 1);
    }
    while (pending.length >= MAX_LINE_CHARS) {
      await options.onLine(source, pending.slice(0, MAX_LINE_CHARS));
      pending = pending.slice(MAX_LINE_CHARS);
    }
  }
  pending += decoder.end();
  if (pending.length > 0) await options.onLine(source, pending);
  return { text: Buffer.concat(kept).toString('utf8'), truncated };
}

/**
 * Runs one process to its end, streaming its output line by line. The process gets its own
 * session (so its group can be signalled as one) and a marker in its environment; when it
 * exits, or the signal aborts, every process it started is killed, so nothing outlives a task.
 */
export async function runProcess(spec: ProcessSpec, options: RunOptions): Promise<ProcessResult> {
  options.signal.throwIfAborted();
  const marker = randomBytes(12).toString('hex');
  const child = spawn(spec.executable, spec.args, {
    cwd: spec.cwd,
    env: { ...spec.env, [TASK_MARKER_VARIABLE]: marker },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
  exited.catch(() => undefined);

  const kill = () => void killTaskProcesses(child.pid, marker);
  options.signal.addEventListener('abort', kill, { once: true });
  let outputBytes = 0;
  let outputLimitExceeded = false;
  const counted = (bytes: number) => {
    outputBytes += bytes;
    if (options.maxOutputBytes && outputBytes > options.maxOutputBytes && !outputLimitExceeded) {
      outputLimitExceeded = true;
      kill();
    }
  };
  try {
    child.stdin.on('error', () => undefined); // the process may exit without reading its input
    child.stdin.end(spec.stdin ?? '');
    if (child.pid !== undefined) options.onStart?.({ pid: child.pid, marker });

    const stdout = pump(child.stdout, 'stdout', options, counted);
    const stderr = pump(child.stderr, 'stderr', options, counted);
    for (const pumping of [stdout, stderr]) pumping.catch(() => undefined); // awaited below; never unhandled
    const { code, signal } = await exited;
    // Whatever the process left running (background children) dies with it; that also closes
    // the pipes those children held, so the pumps can finish.
    await killTaskProcesses(child.pid, marker);
    const [out, err] = await Promise.all([stdout, stderr]);
    const exitCode = code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0);
    return { exitCode, stdout: out, stderr: err, outputLimitExceeded };
  } catch (err) {
    await killTaskProcesses(child.pid, marker);
    throw err;
  } finally {
    options.signal.removeEventListener('abort', kill);
  }
}
