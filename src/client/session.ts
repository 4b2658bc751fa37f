import { ClientError, Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import type { NetworkPolicy } from '../../gen/codegen/v1/common.js';
import { createWorkerClient, type WorkerClient, type WorkerClientOptions } from './createWorkerClient.js';
import { Processes } from './processes.js';
import { runTask, type TaskEnd } from './runTask.js';
import { callTool } from './toolCall.js';

/**
 * The everyday client: a worker and its sessions as objects, over the typed clients and
 * runTask (which stay). The error model, one for every method:
 * - a call the worker refuses (a bad argument, a missing file, a session that is gone, a limit
 *   on what a client sends, the worker unreachable) rejects with its ClientError, the gRPC code
 *   kept (`err.code === Status.NOT_FOUND`);
 * - a call the worker carried out resolves, whatever came of the code it ran: a run or a
 *   command that exited non-zero, was killed by a limit, timed out or was cancelled resolves
 *   with `exitCode`, `killedBy` and `ended`; an install that failed resolves with `ok: false`.
 */

export type KilledBy = 'memory' | 'cpu' | 'disk' | 'pids' | 'output' | 'timeout';

/** What a run (code or a command) came to. */
export interface Execution {
  stdout: string;
  stderr: string;
  exitCode: number;
  /** The limit that ended it, when one did. */
  killedBy?: KilledBy;
  /** It ran to its end (`completed`, exitCode says how), or was stopped at its timeout or cancelled. */
  ended: TaskEnd;
  /** Whether a stream was cut at the worker's per-stream cap (the live callbacks still had it all). */
  truncated: { stdout: boolean; stderr: boolean };
}

export interface RunOptions {
  /** Each piece of output as it is printed (whole lines). */
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  /** The task's timeout (whole seconds, at least 1; the session's and the worker's still bound it). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface CommandOptions extends RunOptions {
  /** A workspace directory to run in (default: the workspace root). */
  cwd?: string;
}

export interface FileEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  modifiedMs: number;
}

export interface Install {
  ok: boolean;
  /** The packages asked for (each as resolved, for node and go). */
  installed: string[];
  stdout: string;
  stderr: string;
  killedBy?: KilledBy;
}

export interface SessionOptions {
  language?: 'python' | 'node' | 'go' | (string & {});
  workspaceId?: string;
  userId?: string;
  env?: Record<string, string>;
  limits?: { memoryMb?: number; cpuPercent?: number; diskMb?: number; timeoutSeconds?: number };
  network?: NetworkPolicy;
}

/** A worker: its sessions, made, restored or reached by id. `CodegenWorker.connect(address)`. */
export class CodegenWorker {
  private constructor(
    /** The typed clients underneath, for what the objects do not cover. */
    readonly client: WorkerClient,
  ) {}

  static connect(address: string, options: WorkerClientOptions = {}): CodegenWorker {
    return new CodegenWorker(createWorkerClient(address, options));
  }

  async createSession(options: SessionOptions = {}): Promise<Session> {
    const limits = options.limits ?? {};
    const created = await this.client.sessions.createSession({
      workspaceId: options.workspaceId ?? 'default',
      userId: options.userId ?? '',
      config: {
        language: options.language ?? '',
        env: options.env ?? {},
        limits: {
          maxMemoryMb: limits.memoryMb ?? 0,
          maxCpuPercent: limits.cpuPercent ?? 0,
          maxDiskMb: limits.diskMb ?? 0,
          timeoutSeconds: limits.timeoutSeconds ?? 0,
        },
        network: options.network,
      },
    });
    return new Session(this.client, created.sessionId, options.language || undefined);
  }

  /** A new session holding a checkpoint's files and environment. */
  async restore(checkpointId: string): Promise<Session> {
    const restored = await this.client.sessions.restoreSession({ checkpointId });
    return new Session(this.client, restored.sessionId);
  }

  /** A session that exists, by id (no call is made). */
  session(sessionId: string): Session {
    return new Session(this.client, sessionId);
  }

  close(): void {
    this.client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** One session: its files, its code and commands, its background processes, its checkpoints. */
export class Session {
  readonly files: SessionFiles;
  readonly commands: { run: (command: string, options?: CommandOptions) => Promise<Execution> };
  readonly processes: Processes;

  constructor(
    private readonly client: WorkerClient,
    readonly id: string,
    private language?: string,
  ) {
    this.files = new SessionFiles(client, id);
    this.processes = new Processes(client.tasks, id);
    this.commands = { run: (command, options = {}) => this.execute('run.shell', { command, ...(options.cwd ? { cwd: options.cwd } : {}) }, options) };
  }

  /** Runs code in the session's language (run.python, run.node or run.go). */
  async run(code: string, options: RunOptions = {}): Promise<Execution> {
    this.language ??= (await this.client.sessions.getSessionStatus({ sessionId: this.id })).language || 'python';
    return this.execute(`run.${this.language}`, { code }, options);
  }

  /** Installs packages (pip requirements, npm specs or Go modules, as the session's language names them). */
  async install(requirements: string | string[], options: { onLog?: (line: string) => void; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Install> {
    const list = typeof requirements === 'string' ? requirements : requirements.join('\n');
    const result = await runTask(
      this.client.tasks,
      { sessionId: this.id, toolName: 'pkg.install', arguments: { requirements: list }, constraints: constraintsOf(options.timeoutMs) },
      { signal: options.signal, onLog: (log) => options.onLog?.(log.message) },
    );
    const o = result.outputs;
    return {
      ok: result.status === TaskStatus.STATUS_SUCCESS,
      installed: o.installed ? o.installed.split(',').filter(Boolean) : [],
      stdout: o.stdout ?? '',
      stderr: o.stderr ?? '',
      ...(o.killed_by ? { killedBy: o.killed_by as KilledBy } : {}),
    };
  }

  /** A checkpoint of the session (incremental: only what changed since the last one). */
  async checkpoint(options: { incremental?: boolean } = {}): Promise<{ checkpointId: string; sizeBytes: number }> {
    const made = await this.client.sessions.checkpointSession({ sessionId: this.id, incremental: options.incremental ?? false });
    return { checkpointId: made.checkpointId, sizeBytes: made.sizeBytes };
  }

  /** A signed URL reaching `port` on the session's loopback (HTTP and WebSocket). */
  async portUrl(port: number, options: { expiresSeconds?: number } = {}): Promise<string> {
    const args: Record<string, string> = { port: String(port) };
    if (options.expiresSeconds !== undefined) args.expires_seconds = String(options.expiresSeconds);
    return (await callTool(this.client.tasks, this.id, 'port.url', args)).url!;
  }

  status() {
    return this.client.sessions.getSessionStatus({ sessionId: this.id });
  }

  /** Ends the session (with `checkpoint`: checkpointed first; its id is returned). */
  async destroy(options: { checkpoint?: boolean } = {}): Promise<{ checkpointId?: string }> {
    const destroyed = await this.client.sessions.destroySession({ sessionId: this.id, createCheckpoint: options.checkpoint ?? false });
    return destroyed.checkpointId ? { checkpointId: destroyed.checkpointId } : {};
  }

  /** `await using session = …`: destroyed at the end of the scope (one already gone is fine). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy().catch((err: unknown) => {
      if (!(err instanceof ClientError && err.code === Status.NOT_FOUND)) throw err;
    });
  }

  private async execute(toolName: string, args: Record<string, string>, options: RunOptions): Promise<Execution> {
    const result = await runTask(
      this.client.tasks,
      { sessionId: this.id, toolName, arguments: args, constraints: constraintsOf(options.timeoutMs) },
      {
        signal: options.signal,
        onLog: (log) => (log.source === 'stderr' ? options.onStderr : options.onStdout)?.(`${log.message}\n`),
      },
    );
    const o = result.outputs;
    return {
      stdout: o.stdout ?? '',
      stderr: o.stderr ?? '',
      exitCode: result.exitCode,
      ...(o.killed_by ? { killedBy: o.killed_by as KilledBy } : {}),
      ended: result.ended,
      truncated: { stdout: o.stdout_truncated === 'true', stderr: o.stderr_truncated === 'true' },
    };
  }
}

/** A session's workspace files. Paths are relative to the workspace root. */
export class SessionFiles {
  constructor(
    private readonly client: WorkerClient,
    private readonly sessionId: string,
  ) {}

  /** Writes a file (text as UTF-8, bytes as they are), making its directories. */
  async write(path: string, data: string | Uint8Array): Promise<{ bytesWritten: number }> {
    const args: Record<string, string> =
      typeof data === 'string' ? { path, contents: data } : { path, contents: Buffer.from(data).toString('base64'), encoding: 'base64' };
    const o = await callTool(this.client.tasks, this.sessionId, 'fs.write', args);
    return { bytesWritten: Number(o.bytes_written) };
  }

  /** A file's bytes. */
  async read(path: string): Promise<Uint8Array> {
    const o = await callTool(this.client.tasks, this.sessionId, 'fs.read', { path, encoding: 'base64' });
    return Buffer.from(o.contents ?? '', 'base64');
  }

  /** A file's text (INVALID_ARGUMENT for one that is not UTF-8). */
  async readText(path: string): Promise<string> {
    return (await callTool(this.client.tasks, this.sessionId, 'fs.read', { path })).contents ?? '';
  }

  /** A directory's entries, sorted by name ('' or '.': the workspace root). */
  async list(path = '.'): Promise<FileEntry[]> {
    const o = await callTool(this.client.tasks, this.sessionId, 'fs.list', { path });
    return (JSON.parse(o.entries_json ?? '[]') as { name: string; type: FileEntry['type']; size: number; modified_ms: number }[]).map((e) => ({
      name: e.name,
      type: e.type,
      size: e.size,
      modifiedMs: e.modified_ms,
    }));
  }
}

/** A task's constraints from a timeout in milliseconds (whole seconds, at least 1). */
function constraintsOf(timeoutMs: number | undefined) {
  return { timeoutSeconds: timeoutMs ? Math.max(1, Math.ceil(timeoutMs / 1000)) : 0, maxMemoryMb: 0, maxCpuPercent: 0 };
}
