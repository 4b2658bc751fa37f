import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { captureOutput, exitCodeOf } from './outputCapture.js';
import { killTaskProcesses, TASK_MARKER_VARIABLE } from './processTree.js';
import type { ProcessGroup, ProcessResult, ProcessSpec, RunOptions } from './processSpec.js';

/**
 * Starts a confined process that outlives any one task (a session's warm interpreter), its filter
 * handed over, in a process group of its own; its caller owns it from then on.
 */
export function startProcess(spec: ProcessSpec): ChildProcess {
  const child = spawn(spec.executable, spec.args, { cwd: spec.cwd, env: spec.env, stdio: stdioOf(spec), detached: true });
  handOverFilter(spec, child);
  return child;
}

/** spawn's stdio for a spec: descriptor 3 when the spec has a filter to hand over, 4 when it has a control pipe. */
function stdioOf(spec: ProcessSpec): ('pipe' | 'ignore')[] {
  const stdio: ('pipe' | 'ignore')[] = ['pipe', 'pipe', 'pipe'];
  if (spec.filter || spec.control) stdio.push(spec.filter ? 'pipe' : 'ignore');
  if (spec.control) stdio.push('pipe');
  return stdio;
}

/** Writes the spec's filter to descriptor 3 of the started child, and closes it. */
function handOverFilter(spec: ProcessSpec, child: ChildProcess): void {
  if (!spec.filter) return;
  const pipe = child.stdio[3] as Writable | null;
  pipe?.on('error', () => undefined);
  pipe?.end(spec.filter);
}

/** The launcher's own process group (before it joined the group), then everything in the task's group. */
async function killGroup(pid: number | undefined, group: ProcessGroup): Promise<void> {
  try {
    if (pid !== undefined) process.kill(-pid, 'SIGKILL');
  } catch {
    // gone already
  }
  await group.killProcesses();
}

/** A fresh value for TASK_MARKER_VARIABLE. */
export function newTaskMarker(): string {
  return randomBytes(12).toString('hex');
}

/**
 * Runs one process to its end, streaming its output line by line. The process gets its own
 * session (so its group can be signalled as one) and a marker in its environment; when it
 * exits, or the signal aborts, every process it started is killed, so nothing outlives a task.
 */
export async function runProcess(spec: ProcessSpec, options: RunOptions): Promise<ProcessResult> {
  await options.recorded;
  options.signal.throwIfAborted();
  const marker = spec.marker ?? newTaskMarker();
  const child = spawn(spec.executable, spec.args, {
    cwd: spec.cwd,
    env: { ...spec.env, [TASK_MARKER_VARIABLE]: marker },
    stdio: stdioOf(spec),
    detached: true,
  }) as ChildProcessWithoutNullStreams;
  handOverFilter(spec, child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
  exited.catch(() => undefined);

  const killAll = () => (spec.group ? killGroup(child.pid, spec.group) : killTaskProcesses(child.pid, marker));
  const kill = () => void killAll();
  options.signal.addEventListener('abort', kill, { once: true });
  try {
    child.stdin.on('error', () => undefined); // the process may exit without reading its input
    child.stdin.end(spec.stdin ?? '');
    if (child.pid !== undefined) options.onStart?.({ pid: child.pid, marker });
    options.phases?.mark('fork');

    const capture = captureOutput(child.stdout, child.stderr, options, kill);
    capture.catch(() => undefined); // awaited below; never unhandled
    const { code, signal } = await exited;
    options.phases?.mark('run');
    // Whatever the process left running (background children) dies with it; that also closes
    // the pipes those children held, so the capture can finish.
    await killAll();
    const { stdout, stderr, outputLimitExceeded } = await capture;
    return { exitCode: exitCodeOf(code, signal), stdout, stderr, outputLimitExceeded };
  } catch (err) {
    await killAll();
    throw err;
  } finally {
    options.signal.removeEventListener('abort', kill);
  }
}
