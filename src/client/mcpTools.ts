import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { ClientError, Status } from 'nice-grpc';
import { z } from 'zod';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import type { Execution } from './session.js';
import { CodegenWorker, Session } from './session.js';
import { callTool } from './toolCall.js';

/**
 * The worker's sessions as MCP tools, for one MCP connection (mcpServer.ts serves them). A tool
 * given no session_id acts on the connection's default session, made on first use, so a plain
 * run_code just works; every session the connection makes (the default, create_session,
 * restore, fork_session) is the connection's, and what becomes of it when the connection closes
 * is `McpConnection.close`'s. A run's output reaches the client while it runs, line by line, as
 * progress notifications (when the call asked for progress) and log messages; a cancelled call
 * cancels its task. A worker's refusal is a tool error with the worker's code and message.
 */

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** What becomes of a connection's sessions when it closes. */
export type OnClose = 'destroy' | 'checkpoint' | 'keep';

const sessionId = z.string().optional().describe("the session to act on (default: this connection's own session, made on first use)");
/** The proto's fields are int32: a larger number would wrap. */
const INT32 = 2 ** 31 - 1;
const timeoutSeconds = z
  .number()
  .int()
  .min(1)
  .max(INT32)
  .optional()
  .describe("stop it after this many seconds (the session's and the worker's limits still apply)");

const executionShape = {
  stdout: z.string(),
  stderr: z.string(),
  exit_code: z.number().int(),
  ended: z.string().describe('completed, timeout or cancelled'),
  killed_by: z.string().optional().describe('the limit that ended it: memory, cpu, disk, pids, output or timeout'),
  session_id: z.string(),
};

export class McpConnection {
  private defaultSession: Promise<Session> | undefined;
  /** Sessions this connection made and has not destroyed. */
  private readonly owned = new Set<string>();
  /** The default session's id, once made. */
  private defaultId: string | undefined;
  /** Sessions being made (the default, create_session, restore, fork_session): close waits for them. */
  private readonly making = new Set<Promise<unknown>>();
  /** Set when close begins: nothing is made after that. */
  private closing = false;

  constructor(
    private readonly worker: CodegenWorker,
    private readonly log: (line: string) => void,
  ) {}

  /** The tools, on `server`. */
  register(server: McpServer): void {
    server.registerTool(
      'create_session',
      {
        title: 'Create a session',
        description:
          'Make a new isolated session (a workspace with its own Python, Node or Go environment) and return its id. ' +
          "Tools given no session_id use this connection's default session instead; pass the id returned here to use this one.",
        inputSchema: {
          language: z.enum(['python', 'node', 'go']).optional().describe("the language run_code runs (default: the worker's, python)"),
          memory_mb: z.number().int().min(1).max(INT32).optional().describe('memory limit in MB'),
          cpu_percent: z.number().int().min(1).max(INT32).optional().describe('CPU limit, percent of one core'),
          disk_mb: z.number().int().min(1).max(INT32).optional().describe('disk limit in MB'),
          timeout_seconds: z.number().int().min(1).max(INT32).optional().describe("each task's timeout"),
          network: z
            .enum(['none', 'allow_list', 'open'])
            .optional()
            .describe("none: loopback only; allow_list: only the hosts in allow; open: the internet (default: the worker's)"),
          allow: z
            .array(z.string())
            .optional()
            .describe('for allow_list (and private ranges under open): host names, *.domains, CIDRs, each with an optional :port'),
          env: z.record(z.string()).optional().describe('environment variables of the session'),
        },
        outputSchema: { session_id: z.string(), language: z.string() },
      },
      this.guard(async (args) => {
        const network = args.network && { mode: NETWORK_MODES[args.network], allow: args.allow ?? [] };
        const session = await this.own(() =>
          this.worker.createSession({
            language: args.language,
            workspaceId: 'mcp',
            env: args.env,
            limits: { memoryMb: args.memory_mb, cpuPercent: args.cpu_percent, diskMb: args.disk_mb, timeoutSeconds: args.timeout_seconds },
            ...(network ? { network } : {}),
          }),
        );
        const language = (await session.status()).language;
        return result(`session ${session.id} (${language})`, { session_id: session.id, language });
      }),
    );

    server.registerTool(
      'run_code',
      {
        title: 'Run code',
        description:
          "Run code in the session's language (Python, JavaScript for Node, or a Go main package) in a fresh process. " +
          'Returns its stdout, stderr and exit code; output also arrives while it runs. Files it writes stay in the workspace.',
        inputSchema: { code: z.string().describe('the program'), session_id: sessionId, timeout_seconds: timeoutSeconds },
        outputSchema: executionShape,
      },
      this.guard(async (args, extra) => {
        const session = await this.session(args.session_id);
        const run = await session.run(args.code, { ...this.live(extra), timeoutMs: ms(args.timeout_seconds) });
        return executionResult(session.id, run);
      }),
    );

    server.registerTool(
      'run_command',
      {
        title: 'Run a shell command',
        description:
          "Run a shell command line (sh -c) in the session's workspace. Returns its stdout, stderr and exit code; output also arrives while it runs.",
        inputSchema: {
          command: z.string().describe('the command line'),
          cwd: z.string().optional().describe('a workspace directory to run it in (default: the workspace root)'),
          session_id: sessionId,
          timeout_seconds: timeoutSeconds,
        },
        outputSchema: executionShape,
      },
      this.guard(async (args, extra) => {
        const session = await this.session(args.session_id);
        const run = await session.commands.run(args.command, { ...this.live(extra), cwd: args.cwd, timeoutMs: ms(args.timeout_seconds) });
        return executionResult(session.id, run);
      }),
    );

    server.registerTool(
      'write_file',
      {
        title: 'Write a file',
        description: 'Write a file in the workspace (parent directories are made), replacing it, or appending to it.',
        inputSchema: {
          path: z.string().describe('a path relative to the workspace root'),
          contents: z.string().describe('the text to write (base64 with encoding base64)'),
          encoding: z.enum(['utf-8', 'base64']).optional().describe('utf-8 (default) or base64 for bytes'),
          append: z.boolean().optional().describe('add to the end instead of replacing'),
          session_id: sessionId,
        },
        outputSchema: { path: z.string(), bytes_written: z.number().int() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const outputs = await this.tool(session, 'fs.write', {
          path: args.path,
          contents: args.contents,
          ...(args.encoding ? { encoding: args.encoding } : {}),
          ...(args.append ? { append: 'true' } : {}),
        });
        const written = { path: args.path, bytes_written: Number(outputs.bytes_written) };
        return result(`wrote ${written.bytes_written} bytes to ${args.path}`, written);
      }),
    );

    server.registerTool(
      'read_file',
      {
        title: 'Read a file',
        description: 'Read a file of the workspace: as text (utf-8, the default) or, for bytes, as base64.',
        inputSchema: {
          path: z.string().describe('a path relative to the workspace root'),
          encoding: z.enum(['utf-8', 'base64']).optional().describe('utf-8 (default; a file that is not UTF-8 is refused) or base64'),
          session_id: sessionId,
        },
        outputSchema: { path: z.string(), contents: z.string(), size: z.number().int(), encoding: z.string() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const outputs = await this.tool(session, 'fs.read', { path: args.path, ...(args.encoding ? { encoding: args.encoding } : {}) });
        const read = { path: args.path, contents: outputs.contents ?? '', size: Number(outputs.size), encoding: outputs.encoding ?? args.encoding ?? 'utf-8' };
        return result(read.contents, read);
      }),
    );

    server.registerTool(
      'list_files',
      {
        title: 'List files',
        description: 'List a workspace directory: each entry with its type, size and modification time.',
        inputSchema: { path: z.string().optional().describe('a directory relative to the workspace root (default: the root)'), session_id: sessionId },
        outputSchema: {
          path: z.string(),
          entries: z.array(z.object({ name: z.string(), type: z.string(), size: z.number(), modified_ms: z.number() })),
        },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const entries = (await session.files.list(args.path ?? '.')).map((e) => ({ name: e.name, type: e.type, size: e.size, modified_ms: e.modifiedMs }));
        const text = entries.map((e) => `${e.type === 'directory' ? `${e.name}/` : e.name}\t${e.size}`).join('\n') || '(empty)';
        return result(text, { path: args.path ?? '.', entries });
      }),
    );

    server.registerTool(
      'install_packages',
      {
        title: 'Install packages',
        description:
          'Install packages into the session\'s environment: pip requirements for Python ("requests==2.32.3"), npm specs for Node, module paths for Go. ' +
          "The installer's log arrives while it runs.",
        inputSchema: {
          packages: z.array(z.string()).min(1).describe('what to install, one requirement each'),
          session_id: sessionId,
          timeout_seconds: timeoutSeconds,
        },
        outputSchema: { ok: z.boolean(), installed: z.array(z.string()), stdout: z.string(), stderr: z.string(), killed_by: z.string().optional() },
      },
      this.guard(async (args, extra) => {
        const session = await this.session(args.session_id);
        const notify = this.live(extra).onStdout;
        const install = await session.install(args.packages, {
          onLog: (line) => notify(`${line}\n`),
          signal: extra.signal,
          timeoutMs: ms(args.timeout_seconds),
        });
        const structured = {
          ok: install.ok,
          installed: install.installed,
          stdout: install.stdout,
          stderr: install.stderr,
          ...(install.killedBy ? { killed_by: install.killedBy } : {}),
        };
        const text = install.ok ? `installed ${install.installed.join(', ')}` : `the install failed:\n${install.stderr || install.stdout}`;
        return { ...result(text, structured), isError: !install.ok };
      }),
    );

    server.registerTool(
      'checkpoint',
      {
        title: 'Checkpoint a session',
        description: "Save the session's workspace and installed packages; restore gives a new session holding them. Returns the checkpoint id.",
        inputSchema: { session_id: sessionId, incremental: z.boolean().optional().describe('only what changed since its last checkpoint') },
        outputSchema: { checkpoint_id: z.string(), size_bytes: z.number(), session_id: z.string() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const made = await session.checkpoint({ incremental: args.incremental });
        return result(`checkpoint ${made.checkpointId}`, { checkpoint_id: made.checkpointId, size_bytes: made.sizeBytes, session_id: session.id });
      }),
    );

    server.registerTool(
      'restore',
      {
        title: 'Restore a checkpoint',
        description: "Make a new session holding a checkpoint's workspace and packages; returns its id (pass it as session_id).",
        inputSchema: { checkpoint_id: z.string().describe('what checkpoint returned') },
        outputSchema: { session_id: z.string() },
      },
      this.guard(async (args) => {
        const session = await this.own(() => this.worker.restore(args.checkpoint_id));
        return result(`session ${session.id}`, { session_id: session.id });
      }),
    );

    server.registerTool(
      'fork_session',
      {
        title: 'Fork a session',
        description:
          'Make copies of a session as it is now (files and installed packages; running processes are not copied), each independent from then on: try several approaches from one state.',
        inputSchema: { session_id: sessionId, count: z.number().int().min(1).max(16).optional().describe('how many (default 1)') },
        outputSchema: { session_ids: z.array(z.string()) },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const forks = await this.own(() => session.fork({ count: args.count ?? 1, workspaceId: 'mcp' }));
        return result(forks.map((f) => f.id).join('\n'), { session_ids: forks.map((f) => f.id) });
      }),
    );

    server.registerTool(
      'destroy_session',
      {
        title: 'Destroy a session',
        description:
          "End a session and remove its files (checkpoint it first to keep them). Without session_id: this connection's default session (the next call makes a new one).",
        inputSchema: { session_id: sessionId },
        outputSchema: { session_id: z.string() },
      },
      this.guard(async (args) => {
        const session = args.session_id !== undefined ? this.worker.session(args.session_id) : await this.defaultSession;
        if (!session) return result('this connection has no default session yet', { session_id: '' });
        // By its id or not, the default session destroyed is no longer the default: the next call makes one.
        if (args.session_id === undefined || session.id === this.defaultId) {
          this.defaultSession = undefined;
          this.defaultId = undefined;
        }
        await session.destroy();
        this.owned.delete(session.id);
        return result(`destroyed ${session.id}`, { session_id: session.id });
      }),
    );

    server.registerTool(
      'start_process',
      {
        title: 'Start a background process',
        description:
          'Start a shell command that keeps running after the call (a server, a watcher); returns its process id. Read its output with process_output.',
        inputSchema: { command: z.string(), cwd: z.string().optional(), session_id: sessionId },
        outputSchema: { process_id: z.string(), pid: z.number(), session_id: z.string() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const started = await session.processes.start(args.command, { cwd: args.cwd });
        return result(`process ${started.processId} (pid ${started.pid})`, { process_id: started.processId, pid: started.pid, session_id: session.id });
      }),
    );

    server.registerTool(
      'process_output',
      {
        title: 'Read a background process',
        description:
          "A background process's output since a position (0: from the start of what is kept; pass back next to read on), and whether it still runs.",
        inputSchema: { process_id: z.string(), since: z.number().int().min(0).optional(), session_id: sessionId },
        outputSchema: { output: z.string(), next: z.number(), running: z.boolean(), exit_code: z.number().optional() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const read = await session.processes.get(args.process_id).output(args.since ?? 0);
        const structured = { output: read.output, next: read.next, running: read.running, ...(read.exit ? { exit_code: read.exit.exitCode } : {}) };
        return result(read.output || (read.running ? '(no output yet)' : `(ended, exit code ${read.exit?.exitCode})`), structured);
      }),
    );

    server.registerTool(
      'stop_process',
      {
        title: 'Stop a background process',
        description: 'Send a background process a signal (default TERM) to end it.',
        inputSchema: { process_id: z.string(), signal: z.enum(['TERM', 'KILL', 'INT', 'HUP']).optional(), session_id: sessionId },
        outputSchema: { process_id: z.string() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        await session.processes.call('proc.signal', { process_id: args.process_id, signal: args.signal ?? 'TERM' });
        return result(`sent ${args.signal ?? 'TERM'} to ${args.process_id}`, { process_id: args.process_id });
      }),
    );

    server.registerTool(
      'port_url',
      {
        title: 'A URL for a port',
        description: 'A signed URL that reaches a port a process of the session listens on (HTTP and WebSocket), to open a server it runs.',
        inputSchema: { port: z.number().int().min(1).max(65535), session_id: sessionId },
        outputSchema: { url: z.string() },
      },
      this.guard(async (args) => {
        const session = await this.session(args.session_id);
        const url = await session.portUrl(args.port);
        return result(url, { url });
      }),
    );
  }

  /**
   * The connection is gone: its sessions are destroyed (the default), checkpointed and destroyed
   * (each checkpoint id said in the log), or kept.
   */
  async close(onClose: OnClose): Promise<void> {
    // Sessions still being made are the connection's too: waited for, then gone with the rest.
    this.closing = true;
    await Promise.allSettled([...this.making]);
    if (onClose === 'keep') {
      for (const id of this.owned) this.log(`session ${id} kept`);
      return;
    }
    await Promise.all(
      [...this.owned].map(async (id) => {
        try {
          const { checkpointId } = await this.worker.session(id).destroy({ checkpoint: onClose === 'checkpoint' });
          this.log(checkpointId ? `session ${id} checkpointed as ${checkpointId} and destroyed` : `session ${id} destroyed`);
        } catch (err) {
          if (!(err instanceof ClientError && err.code === Status.NOT_FOUND)) this.log(`session ${id}: ${workerMessage(err)}`);
        }
        this.owned.delete(id);
      }),
    );
  }

  /**
   * A handler whose failure is a tool error saying the worker's code and message (not the gRPC
   * method's path). The connection's own session found gone (the worker ended it for idleness,
   * or another client did) stops being the default: the next call makes a new one, and the error
   * says so.
   */
  private guard<A extends unknown[]>(handler: (...args: A) => Promise<CallToolResult>): (...args: A) => Promise<CallToolResult> {
    return async (...args) => {
      try {
        return await handler(...args);
      } catch (err) {
        let text = workerMessage(err);
        const given = (args[0] as { session_id?: unknown } | undefined)?.session_id;
        const gone = this.defaultId;
        if (err instanceof ClientError && err.code === Status.NOT_FOUND && given === undefined && gone !== undefined && err.details.includes(gone)) {
          this.defaultSession = undefined;
          this.defaultId = undefined;
          this.owned.delete(gone);
          text += " (this connection's own session is gone: the next call makes a new one)";
        }
        return { content: [{ type: 'text', text }], isError: true };
      }
    };
  }

  /** The session `id` names, or the connection's default (made now if it has none). */
  private async session(id: string | undefined): Promise<Session> {
    if (id !== undefined) return this.worker.session(id);
    this.defaultSession ??= this.own(() => this.worker.createSession({ workspaceId: 'mcp' })).then(
      (session) => {
        this.defaultId = session.id;
        return session;
      },
      (err: unknown) => {
        this.defaultSession = undefined;
        throw err;
      },
    );
    return this.defaultSession;
  }

  /** Makes a session (or several) that is the connection's; none once the connection is closing. */
  private async own<T extends Session | Session[]>(make: () => Promise<T>): Promise<T> {
    if (this.closing) throw new Error('this MCP connection is closed');
    const made = make().then((sessions) => {
      for (const session of ([] as Session[]).concat(sessions)) this.owned.add(session.id);
      return sessions;
    });
    this.making.add(made);
    try {
      return await made;
    } finally {
      this.making.delete(made);
    }
  }

  private async tool(session: Session, name: string, args: Record<string, string>): Promise<Record<string, string>> {
    return callTool(this.worker.client.tasks, session.id, name, args);
  }

  /** Output handlers that tell the client each line as it comes, and the call's cancellation. */
  private live(extra: Extra): { onStdout: (text: string) => void; onStderr: (text: string) => void; signal: AbortSignal } {
    const token = extra._meta?.progressToken;
    let progress = 0;
    const send = (logger: 'stdout' | 'stderr', text: string) => {
      const sent = [
        extra.sendNotification({ method: 'notifications/message', params: { level: logger === 'stderr' ? 'warning' : 'info', logger, data: text } }),
      ];
      if (token !== undefined)
        sent.push(extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: ++progress, message: text } }));
      // A client gone meanwhile: the run goes on to its result (or its cancellation).
      for (const s of sent) s.catch(() => undefined);
    };
    return { onStdout: (text) => send('stdout', text), onStderr: (text) => send('stderr', text), signal: extra.signal };
  }
}

const NETWORK_MODES = { none: NetworkMode.NETWORK_MODE_NONE, allow_list: NetworkMode.NETWORK_MODE_ALLOW_LIST, open: NetworkMode.NETWORK_MODE_OPEN };

const ms = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);

function result(text: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: structured };
}

function executionResult(id: string, run: Execution): CallToolResult {
  const structured = {
    stdout: run.stdout,
    stderr: run.stderr,
    exit_code: run.exitCode,
    ended: run.ended,
    ...(run.killedBy ? { killed_by: run.killedBy } : {}),
    session_id: id,
  };
  const how = run.ended === 'completed' ? `exit code ${run.exitCode}` : run.ended === 'timeout' ? 'stopped at its timeout' : 'cancelled';
  const text = [
    run.stdout.replace(/\n$/, ''),
    run.stderr && `stderr:\n${run.stderr.replace(/\n$/, '')}`,
    `(${how}${run.killedBy ? `, killed by its ${run.killedBy} limit` : ''})`,
  ]
    .filter(Boolean)
    .join('\n');
  return result(text, structured);
}

/** A worker's refusal as one line: its code and its message. */
export function workerMessage(err: unknown): string {
  if (err instanceof ClientError) return `${Status[err.code]}: ${err.details}`;
  return err instanceof Error ? err.message : String(err);
}
