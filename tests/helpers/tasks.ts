import { readdirSync, readFileSync } from 'node:fs';
import { ClientError, Status } from 'nice-grpc';
import type { LogEntry, ProgressUpdate, TaskExecutionClient, TaskResponse, TaskResult } from '../../gen/codegen/v1/task_execution.js';

export interface TaskRun {
  messages: TaskResponse[];
  logs: LogEntry[];
  progress: ProgressUpdate[];
  result: TaskResult | undefined;
  /** The call's status code (OK when it ended normally). */
  code: Status;
  error: ClientError | undefined;
}

/** Runs ExecuteTask to its end and gathers what the stream carried. */
export type TaskRequestInput = Parameters<TaskExecutionClient['executeTask']>[0];

export async function runTask(client: TaskExecutionClient, request: TaskRequestInput, signal?: AbortSignal): Promise<TaskRun> {
  const run: TaskRun = { messages: [], logs: [], progress: [], result: undefined, code: Status.OK, error: undefined };
  try {
    for await (const message of client.executeTask(request, { signal })) {
      run.messages.push(message);
      const payload = message.payload;
      if (payload?.$case === 'log') run.logs.push(payload.value);
      if (payload?.$case === 'progress') run.progress.push(payload.value);
      if (payload?.$case === 'result') run.result = payload.value;
    }
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    run.code = err.code;
    run.error = err;
  }
  return run;
}

/** Runs a tool and insists it succeeded; returns its outputs. */
export async function runTool(client: TaskExecutionClient, sessionId: string, toolName: string, args: Record<string, string>): Promise<Record<string, string>> {
  const run = await runTask(client, { sessionId, toolName, arguments: args });
  if (run.code !== Status.OK || run.result?.status !== 1) {
    throw new Error(`${toolName} failed: code ${Status[run.code]} ${run.error?.details ?? ''} result ${JSON.stringify(run.result)}`);
  }
  return run.result.outputs;
}

/** The gRPC status code a unary call ends with (OK when it succeeds). */
export async function statusOf(call: Promise<unknown>): Promise<Status> {
  try {
    await call;
    return Status.OK;
  } catch (err) {
    if (err instanceof ClientError) return err.code;
    throw err;
  }
}

/** Whether a process still runs (a zombie awaiting its reaper does not count). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Polls until the condition holds (or fails the test after timeoutMs). */
export async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Live host processes whose environment holds `name=value`: a session created with that in its
 * env marks every process its code starts, whatever pid namespace it runs in.
 */
export function processesMarked(name: string, value: string): number[] {
  const needle = `${name}=${value}\0`;
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        // A warm interpreter's forked-ahead child (the next call's process) belongs to no task.
        if (readFileSync(`/proc/${pid}/comm`, 'latin1').trim() === 'codegen-ahead') return false;
        return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(needle) && isAlive(pid);
      } catch {
        return false;
      }
    });
}

/** runTask, but one that has not answered within `ms` ends DEADLINE_EXCEEDED (the call is cancelled), so a hang fails a test instead of hanging it. */
export async function runTaskWithin(client: TaskExecutionClient, request: TaskRequestInput, ms: number): Promise<TaskRun> {
  try {
    return await runTask(client, request, AbortSignal.timeout(ms));
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
    const error = new ClientError('/codegen.v1.TaskExecution/ExecuteTask', Status.DEADLINE_EXCEEDED, `no answer within ${ms} ms`);
    return { messages: [], logs: [], progress: [], result: undefined, code: Status.DEADLINE_EXCEEDED, error };
  }
}

/** A bounded call to one tool: its status, result and everything it printed. */
export interface ToolCall {
  code: Status;
  details: string;
  result: TaskResult | undefined;
  /** Streamed log lines, the result's stdout, stderr and error, and the status details. */
  text: string;
}

export async function callTool(client: TaskExecutionClient, sessionId: string, toolName: string, args: Record<string, string>, ms = 30_000): Promise<ToolCall> {
  const run = await runTaskWithin(client, { sessionId, toolName, arguments: args }, ms);
  const details = run.error?.details ?? '';
  const outputs = run.result?.outputs ?? {};
  const text = [...run.logs.map((l) => l.message), outputs.stdout ?? '', outputs.stderr ?? '', run.result?.error ?? '', details].join('\n');
  return { code: run.code, details, result: run.result, text };
}

export function describeCall(c: ToolCall, max = 1500): string {
  return `code ${Status[c.code]} ${c.details.slice(0, 300)} result ${JSON.stringify(c.result)?.slice(0, max)}`;
}
