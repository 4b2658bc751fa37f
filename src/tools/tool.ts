import type { WorkerError } from '../errors.js';
import type { Session } from '../sessions/session.js';
import type { TaskEvent } from './taskEvents.js';

export interface ToolLimits {
  /** Bytes of stdout/stderr kept in a result, per stream. */
  maxOutputBytes: number;
  /** Largest file content that fits in one gRPC message. */
  maxMessageBytes: number;
}

/** What a tool gets while it runs. */
export interface ToolContext {
  session: Session;
  /** Aborted on cancel, timeout, the client going away or the session being destroyed. */
  signal: AbortSignal;
  /** Sends a progress or log event to the client; resolves when the stream has room. */
  emit(event: Exclude<TaskEvent, { kind: 'result' }>): Promise<void>;
  limits: ToolLimits;
  /** The task's own narrowing of the session's limits (0: the session's). */
  constraints: { maxMemoryMb: number; maxCpuPercent: number };
}

/** How a tool ended in its own terms. */
export interface ToolOutcome {
  ok: boolean;
  outputs: Record<string, string>;
  exitCode: number;
  error?: string;
  /** Ends the call with this status after the result message (pkg.install failing: INTERNAL). */
  callError?: WorkerError;
}

/**
 * A tool: parse() checks the arguments before anything runs (INVALID_ARGUMENT), run() does the
 * work. Request errors (file not found, invalid path) are thrown as WorkerError and end the call
 * with their code and no result.
 */
export interface Tool<Args = unknown> {
  name: string;
  /** Whether run() emits progress or log events (they then flow through a bounded queue). */
  streams: boolean;
  parse(args: Record<string, string>): Args;
  run(args: Args, ctx: ToolContext): Promise<ToolOutcome>;
}

export function defineTool<Args>(tool: Tool<Args>): Tool<unknown> {
  return tool as Tool<unknown>;
}
