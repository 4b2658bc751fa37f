import type { WorkerError } from '../errors.js';
import type { Language } from '../sandbox/languages/language.js';
import type { SessionSandbox } from '../sandbox/session/sessionSandbox.js';
import type { WriteGate } from '../sessions/writeGate.js';
import type { PhaseClock } from '../telemetry/taskPhases.js';
import { checkArguments } from './arguments.js';
import type { TaskEvent } from './taskEvents.js';

export interface ToolLimits {
  /** Bytes of stdout/stderr kept in a result, per stream. */
  maxOutputBytes: number;
  /** Largest file content that fits in one gRPC message. */
  maxMessageBytes: number;
}

/** What a tool uses of its session's sandbox (SessionSandbox is one). */
export type ToolSandbox = Pick<
  SessionSandbox,
  'workspace' | 'scratch' | 'owner' | 'runCode' | 'runShell' | 'install' | 'startBackground' | 'background' | 'canConnectPorts'
> & {
  readonly language: Pick<Language, 'installer'>;
};

/** What a tool uses of its session (sessions/session.ts's Session is one). */
export interface ToolSession {
  readonly id: string;
  readonly userId: string;
  readonly sandbox: ToolSandbox;
  /** Where a tool's writes into the session's files go through (sessions/writeGate.ts). */
  readonly writes: Pick<WriteGate, 'write'>;
  /** The number of the next background process, recorded before it is used (ids never repeat). */
  nextProcessNumber(): Promise<number>;
}

/** Signed URLs on the worker's HTTP endpoint that reach a port of a session's (http/portRequests.ts). */
export interface PortLinks {
  url(sessionId: string, port: number, expiresSeconds: number): string;
  maxExpiresSeconds: number;
}

/** What every tool gets while it runs. */
export interface InstantToolContext {
  /** Port URLs, where the worker hands them out. */
  portLinks?: PortLinks | undefined;
  session: ToolSession;
  limits: ToolLimits;
  /** The task's own narrowing of the session's limits (0: the session's). */
  constraints: { maxMemoryMb: number; maxCpuPercent: number };
  /**
   * Waits until `bytes` of request or reply (a file's contents, in each form it takes at once)
   * may be held, within the session's share and the worker's; held until the call has sent its
   * result. Fails when the call ends first.
   */
  holdPayload(bytes: number): Promise<void>;
}

/** What a process tool gets besides: the task's signal, and a way to stream events. */
export interface ToolContext extends InstantToolContext {
  /** Aborted on cancel, timeout, the client going away or the session being destroyed. */
  signal: AbortSignal;
  /** Marks where the task's time goes (see telemetry/taskPhases.ts). */
  phases?: PhaseClock;
  /** Settles once the task is on disk; a process the tool starts runs its code only after (RunOptions.recorded). */
  recorded?: Promise<void>;
  /** Sends a progress or log event to the client; resolves when the stream has room. */
  emit(event: Exclude<TaskEvent, { kind: 'result' }>): Promise<void>;
  /** Whether other sessions want the worker now: a process's output is then read at a pace (RunOptions.pacedReads). */
  othersBusy?: () => boolean;
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

/** The names of the arguments a tool takes. */
interface ArgumentNames {
  required: readonly string[];
  optional: readonly string[];
}

interface ToolBase<Args> {
  name: string;
  /** What parse() lets through; docs/api.md's Tools table lists the same (tests/unit/apiToolTables.test.ts). */
  arguments: ArgumentNames;
  /** Every output its results may carry, whichever way it ends; docs/api.md's Tools table lists the same. */
  outputs: readonly string[];
  /** Checks the arguments (for `session`, whose language some tools' arguments depend on) before anything runs; throws INVALID_ARGUMENT. */
  parse(args: Record<string, string>, session: ToolSession): Args;
}

/**
 * A tool that starts no process and does bounded work at disk speed (echo, fs.*). It runs
 * without a timer, a client-gone listener or an abort signal: it is over before they could act.
 */
export interface InstantTool<Args> extends ToolBase<Args> {
  kind: 'instant';
  run(args: Args, ctx: InstantToolContext): Promise<ToolOutcome>;
}

/**
 * A tool that starts processes or may be slow (the run tools, pkg.install). It runs under the task's
 * signal, so CancelTask, the timeout, the client going away and DestroySession all stop it, and
 * its events flow to the client through a bounded queue. The kind to choose when in doubt.
 */
export interface ProcessTool<Args> extends ToolBase<Args> {
  kind: 'process';
  run(args: Args, ctx: ToolContext): Promise<ToolOutcome>;
}

/**
 * A tool: parse() checks the arguments, run() does the work. Request errors (file not found,
 * invalid path) are thrown as WorkerError and end the call with their code and no result.
 */
export type Tool<Args = unknown> = InstantTool<Args> | ProcessTool<Args>;

/** The arguments a tool's own parse() gets: checked against its names, so only those, the required ones there. */
type CheckedArguments<Required extends string, Optional extends string> = Record<Required, string> & Partial<Record<Optional, string>>;

/** A tool as its module writes it: `arguments` names what it takes, and parse() sees nothing else. */
type ToolDefinition<Args, Required extends string, Optional extends string> = (
  Omit<InstantTool<Args>, 'parse' | 'arguments'> | Omit<ProcessTool<Args>, 'parse' | 'arguments'>
) & {
  arguments: { required: readonly Required[]; optional?: readonly Optional[] };
  parse(args: CheckedArguments<Required, Optional>, session: ToolSession): Args;
};

/** The tool, its arguments checked against its declared names before its own parse() runs. */
export function defineTool<Args, Required extends string, Optional extends string = never>(tool: ToolDefinition<Args, Required, Optional>): Tool<unknown> {
  const { required, optional = [] } = tool.arguments;
  return {
    ...tool,
    arguments: { required, optional },
    parse: (args, session) => tool.parse(checkArguments(tool.name, args, required, optional), session),
  };
}
