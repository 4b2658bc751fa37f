#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import {
  ChannelCredentials,
  ClientError,
  createWorkerClient,
  Processes,
  runTask,
  SessionFiles,
  SessionState,
  Status,
  TaskStatus,
  type RunTaskResult,
  CodegenWorker,
  type WorkerClient,
  type WorkerClientOptions,
} from './client/index.js';
import { enumNames } from './client/enumNames.js';
import type { OnClose } from './client/mcpTools.js';
import { WORKER_VERSION } from './version.js';

/**
 * `codegen-worker`: a command-line client of a worker, for people and scripts. A command whose
 * result is an id (create, restore, checkpoint, destroy --checkpoint) prints that id alone, so
 * `codegen-worker restore $(codegen-worker checkpoint <session>)` works; --json prints the whole
 * reply, enums by name.
 */
const program = new Command('codegen-worker')
  .description('talk to a CodeGen-MCP worker')
  .version(WORKER_VERSION, '-V, --version', 'print the version')
  .addOption(new Option('-a, --address <host:port>', 'the worker').env('WORKER_ADDRESS').default('localhost:50052'))
  .option('--json', 'print JSON instead of text: the whole reply, one object per line, enums by name')
  // Read from the environment by commander, so --help names the variable but never shows the token.
  .addOption(new Option('--token <token>', "the worker's WORKER_AUTH_TOKEN").env('WORKER_AUTH_TOKEN'))
  .option('--tls-ca <file>', 'reach the worker over TLS, trusting this CA (PEM)')
  .option('--tls-cert <file>', 'client certificate (PEM), for a worker asking for one (mTLS)')
  .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
  .showHelpAfterError();

interface Globals {
  address: string;
  json?: boolean;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const globals = () => program.opts<Globals>();

function pairs(values: string[] | undefined): Record<string, string> {
  return Object.fromEntries(
    (values ?? []).map((v) => {
      const eq = v.indexOf('=');
      if (eq < 1) throw new Error(`expected key=value, got '${v}'`);
      return [v.slice(0, eq), v.slice(eq + 1)];
    }),
  );
}

/** One JSON line, enums by name. */
const json = (value: unknown) => `${JSON.stringify(value, enumNames)}\n`;

function print(value: unknown, text: string): void {
  process.stdout.write(globals().json ? json(value) : `${text}\n`);
}

/** The token and TLS the global options give. */
async function connectOptions(): Promise<WorkerClientOptions> {
  const { token, tlsCa, tlsCert, tlsKey } = globals();
  const read = async (file: string | undefined) => (file ? readFile(file) : null);
  const tls = tlsCa || tlsCert ? ChannelCredentials.createSsl(await read(tlsCa), await read(tlsKey), await read(tlsCert)) : undefined;
  return { token, credentials: tls };
}

async function withClient<T>(fn: (client: WorkerClient) => Promise<T>): Promise<T> {
  const client = createWorkerClient(globals().address, await connectOptions());
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

program
  .command('create')
  .description('create a session')
  .requiredOption('-w, --workspace <id>', 'workspace id')
  .option('-u, --user <id>', 'user id', '')
  .option('-l, --language <name>', 'python, node or go, as the worker offers them', 'python')
  .option('-e, --env <key=value>', 'environment variable for the session (repeatable)', collect)
  .option('--memory <mb>', 'memory limit in MB', Number)
  .option('--timeout <seconds>', 'task timeout in seconds', Number)
  .action(async (opts: { workspace: string; user: string; language: string; env?: string[]; memory?: number; timeout?: number }) =>
    withClient(async ({ sessions }) => {
      const created = await sessions.createSession({
        workspaceId: opts.workspace,
        userId: opts.user,
        config: { language: opts.language, env: pairs(opts.env), limits: { maxMemoryMb: opts.memory ?? 0, timeoutSeconds: opts.timeout ?? 0 } },
      });
      print(created, created.sessionId);
    }),
  );

program
  .command('run')
  .description('run a tool in a session, showing its output and progress as they happen')
  .argument('<session>', 'session id')
  .argument('<tool>', "echo, fs.write, fs.read, fs.list, run.shell, pkg.install or the session language's run tool (run.python, run.node, run.go)")
  .option('--arg <key=value>', 'tool argument (repeatable)', collect)
  .option('-c, --code <source>', 'for run.python, run.node, run.go: the code')
  .option(
    '-f, --file <path>',
    'for run.python, run.node, run.go: a local file holding the code; for fs.write: a local file to write (- for stdin), binary-safe',
  )
  .option('--command <line>', 'for run.shell: the command line')
  .option('--cwd <path>', 'for run.shell: a workspace directory to run it in')
  .option('--background', 'for run.shell: start it as a background process and print its id (see attach)')
  .option('--pty', 'with --background: on a terminal of its own, sized as this one')
  .option('--timeout <seconds>', 'task timeout', Number)
  .option('--raw', "for fs.read: the file's contents alone on stdout, byte for byte")
  .action(async (sessionId: string, tool: string, opts: RunOptions) =>
    withClient(async ({ tasks }) => {
      const args = await toolArguments(tool, opts);
      const asJson = globals().json;
      const bar = !asJson && process.stderr.isTTY;
      let result;
      let streamed = false;
      try {
        result = await runTask(
          tasks,
          { sessionId, toolName: tool, arguments: args, constraints: { timeoutSeconds: opts.timeout ?? 0, maxMemoryMb: 0, maxCpuPercent: 0 } },
          {
            onLog: (log) => {
              streamed = true;
              if (asJson) process.stdout.write(json({ log }));
              else (log.source === 'stderr' ? process.stderr : process.stdout).write(`${log.message}\n`);
            },
            onProgress: (progress) => {
              if (asJson) process.stdout.write(json({ progress }));
              else if (bar) {
                const filled = Math.round(progress.percentComplete / 5);
                process.stderr.write(
                  `\r[${'#'.repeat(filled)}${' '.repeat(20 - filled)}] ${String(progress.percentComplete).padStart(3)}% ${progress.stage}\x1b[K${progress.percentComplete >= 100 ? '\n' : ''}`,
                );
              }
            },
          },
        );
      } catch (err) {
        if (err instanceof ClientError) {
          process.stderr.write(`${explained(err)}\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
      printResult(tool, opts, result, streamed);
    }),
  );

interface RunOptions {
  arg?: string[];
  code?: string;
  file?: string;
  command?: string;
  cwd?: string;
  timeout?: number;
  background?: boolean;
  pty?: boolean;
  raw?: boolean;
}

/** The tool's arguments from --arg and the options that stand for arguments. */
async function toolArguments(tool: string, opts: RunOptions): Promise<Record<string, string>> {
  const args = pairs(opts.arg);
  if (tool === 'fs.write' && opts.file !== undefined) {
    // The file's bytes, whatever they are (`-`: stdin), as base64: binary-safe, and no argument list to overflow.
    args.contents = (opts.file === '-' ? await readAll(process.stdin) : await readFile(opts.file)).toString('base64');
    args.encoding = 'base64';
  } else if (opts.file !== undefined) args.code = await readFile(opts.file, 'utf8');
  if (tool === 'fs.read' && opts.raw) args.encoding = 'base64';
  if (opts.command !== undefined) args.command = opts.command;
  if (opts.cwd !== undefined) args.cwd = opts.cwd;
  if (opts.background) args.background = 'true';
  if (opts.pty) Object.assign(args, { pty: 'true', rows: String(process.stdout.rows || 24), cols: String(process.stdout.columns || 80) });
  if (opts.code !== undefined) args.code = opts.code;
  return args;
}

/** What the task ended with, and the exit status that says it. */
function printResult(tool: string, opts: RunOptions, result: RunTaskResult, streamed: boolean): void {
  const asJson = globals().json;
  // A task that timed out or was cancelled still has its result: what it printed before.
  if (asJson) process.stdout.write(json({ result }));
  // A background start: its id alone, for `attach <session> $(codegen-worker run … --background)`.
  else if (opts.background && result.outputs.process_id) process.stdout.write(`${result.outputs.process_id}\n`);
  else if (opts.raw && tool === 'fs.read') {
    if (result.status === TaskStatus.STATUS_SUCCESS) process.stdout.write(Buffer.from(result.outputs.contents ?? '', 'base64'));
  }
  // Run tools' output was streamed as it came; other tools' outputs are shown now, but for
  // what streamed as logs already (pkg.install's installer output).
  else if (!tool.startsWith('run.'))
    for (const [key, value] of Object.entries(result.outputs)) {
      if (streamed && (key === 'stdout' || key === 'stderr')) continue;
      process.stdout.write(`${key}: ${value}\n`);
    }
  if (result.status !== TaskStatus.STATUS_SUCCESS) {
    if (!asJson) process.stderr.write(`${TaskStatus[result.status]}${result.error ? `: ${result.error}` : ''}\n`);
    // 124 on timeout, as timeout(1) does; otherwise the task's exit code.
    process.exitCode = result.ended === 'timeout' ? 124 : result.exitCode > 0 && result.exitCode < 256 ? result.exitCode : 1;
  }
}

program
  .command('attach')
  .description("a background process's output live, this terminal's keys to its input (Ctrl-] leaves it running)")
  .argument('<session>', 'session id')
  .argument('<process>', 'process id (p1, …)')
  .action(async (sessionId: string, processId: string) =>
    withClient(async ({ tasks }) => {
      const attached = new Processes(tasks, sessionId).get(processId);
      const stdin = process.stdin;
      const follow = new AbortController();
      const onKeys = (chunk: Buffer) => {
        if (chunk.includes(0x1d)) return follow.abort(); // Ctrl-]
        void attached.sendStdin(chunk).catch(() => undefined);
      };
      const onResize = () => void attached.resize(process.stdout.rows, process.stdout.columns).catch(() => undefined);
      if (stdin.isTTY) stdin.setRawMode(true);
      stdin.on('data', onKeys);
      process.stdout.on('resize', onResize);
      try {
        const exit = await attached.follow({
          signal: follow.signal,
          onStdout: (text) => process.stdout.write(text),
          onStderr: (text) => process.stderr.write(text),
        });
        if (exit) process.exitCode = exit.exitCode;
      } finally {
        if (stdin.isTTY) stdin.setRawMode(false);
        stdin.off('data', onKeys);
        stdin.pause();
        process.stdout.off('resize', onResize);
      }
    }),
  );

program
  .command('cp')
  .description('copy files and directories between here and a session: cp ./local <session>:path, or cp <session>:path ./local')
  .argument('<from>', 'a local path, or <session>:<path in the workspace>')
  .argument('<to>', 'a local path, or <session>:<path in the workspace>')
  .action(async (from: string, to: string) =>
    withClient(async (client) => {
      const [remoteFrom, remoteTo] = [sessionPath(from), sessionPath(to)];
      if ((remoteFrom === undefined) === (remoteTo === undefined)) throw new Error('cp: exactly one side must be <session>:<path>');
      const bar = process.stderr.isTTY && !globals().json;
      const onProgress = ({ path, bytes, totalBytes }: { path: string; bytes: number; totalBytes: number }) => {
        if (bar) process.stderr.write(`\r${path} ${bytes}/${totalBytes} bytes\x1b[K`);
      };
      const files = remoteFrom ? new SessionFiles(client, remoteFrom.sessionId) : new SessionFiles(client, remoteTo!.sessionId);
      const copied = remoteFrom ? await files.download(remoteFrom.path, to, { onProgress }) : await files.upload(from, remoteTo!.path, { onProgress });
      if (bar) process.stderr.write('\n');
      for (const { path, reason } of copied.skipped) process.stderr.write(`cp: skipped ${JSON.stringify(path)}: ${reason}\n`);
      const made = copied.directories > 0 ? `, ${copied.directories} empty director${copied.directories === 1 ? 'y' : 'ies'}` : '';
      print(copied, `${copied.files} file${copied.files === 1 ? '' : 's'}, ${copied.bytes} bytes${made}`);
      // As cp(1): what could not be copied makes the exit status 1, after the rest was.
      if (copied.skipped.length > 0) process.exitCode = 1;
    }),
  );

/** `<session>:<path>` (a session id, as the worker makes them), or undefined for a local path. */
function sessionPath(arg: string): { sessionId: string; path: string } | undefined {
  const match = /^(session-[A-Za-z0-9_-]+):(.*)$/.exec(arg);
  return match ? { sessionId: match[1]!, path: match[2] || '.' } : undefined;
}

program
  .command('status')
  .description("a session's status")
  .argument('<session>', 'session id')
  .action(async (sessionId: string) =>
    withClient(async ({ sessions }) => {
      const status = await sessions.getSessionStatus({ sessionId });
      print(
        status,
        `${status.sessionId} ${SessionState[status.state]} tasks=${status.activeTasks} disk=${status.usage?.diskBytes ?? 0}B memory=${status.usage?.memoryBytes ?? 0}B last_checkpoint=${status.lastCheckpointId || '-'}`,
      );
    }),
  );

program
  .command('capacity')
  .description("the worker's capacity")
  .action(async () =>
    withClient(async ({ sessions }) => {
      const capacity = await sessions.getCapacity({});
      print(
        capacity,
        [
          `${capacity.activeSessions}/${capacity.totalSessions} sessions (${capacity.availableSessions} available)`,
          ...capacity.sessions.map((s) => `  ${s.sessionId} ${s.workspaceId} ${SessionState[s.state]} tasks=${s.activeTasks}`),
        ].join('\n'),
      );
    }),
  );

program
  .command('checkpoint')
  .description('checkpoint a session')
  .argument('<session>', 'session id')
  .option('-i, --incremental', 'only what changed since the previous checkpoint')
  .action(async (sessionId: string, opts: { incremental?: boolean }) =>
    withClient(async ({ sessions }) => {
      const checkpoint = await sessions.checkpointSession({ sessionId, incremental: opts.incremental ?? false });
      // The id alone, for `restore $(codegen-worker checkpoint <session>)`; --json has the size and URL.
      print(checkpoint, checkpoint.checkpointId);
    }),
  );

program
  .command('fork')
  .description("new sessions holding a session's files, packages and settings as they are now (prints their ids, one per line)")
  .argument('<session>', 'session id')
  .option('-n, --count <n>', 'how many (1 to 16)', (v: string) => Number(v), 1)
  .option('-w, --workspace <id>', "the forks' workspace id (default: the source's)")
  .action(async (sessionId: string, opts: { count: number; workspace?: string }) =>
    withClient(async ({ sessions }) => {
      const forked = await sessions.forkSession({ sessionId, count: opts.count, workspaceId: opts.workspace ?? '' });
      print(forked, forked.sessionIds.join('\n'));
    }),
  );

program
  .command('restore')
  .description('restore a checkpoint into a new session')
  .argument('<checkpoint>', 'checkpoint id')
  .action(async (checkpointId: string) =>
    withClient(async ({ sessions }) => {
      const restored = await sessions.restoreSession({ checkpointId });
      print(restored, restored.sessionId);
    }),
  );

program
  .command('destroy')
  .description('destroy a session (with --checkpoint: prints the checkpoint id)')
  .argument('<session>', 'session id')
  .addOption(new Option('--checkpoint', 'checkpoint it first, and print the checkpoint id'))
  .action(async (sessionId: string, opts: { checkpoint?: boolean }) =>
    withClient(async ({ sessions }) => {
      const destroyed = await sessions.destroySession({ sessionId, createCheckpoint: opts.checkpoint ?? false });
      print(destroyed, opts.checkpoint ? destroyed.checkpointId : 'destroyed');
    }),
  );

program
  .command('mcp')
  .description("serve the worker's sessions as an MCP server: on stdin and stdout (an MCP client starts this command), or over Streamable HTTP with --http")
  .option('--http <host:port>', 'serve MCP over Streamable HTTP at http://host:port/mcp instead (port 0: any free one; the URL is printed on stderr)')
  .addOption(
    new Option('--on-close <what>', 'what becomes of the sessions a connection made when it closes (checkpoint: each checkpoint id is printed on stderr)')
      .choices(['destroy', 'checkpoint', 'keep'])
      .default('destroy'),
  )
  .option('--idle-timeout <seconds>', 'with --http: close an MCP session whose client has had no request or stream open this long (it is gone)', '900')
  .action(async (opts: { http?: string; onClose: OnClose; idleTimeout: string }) => {
    // Loaded here: the MCP SDK (express, hono, zod, ajv) would double every other command's start-up.
    const { serveHttp, serveStdio } = await import('./client/mcpServer.js');
    const worker = CodegenWorker.connect(globals().address, await connectOptions());
    const log = (line: string) => process.stderr.write(`${line}\n`);
    try {
      if (opts.http === undefined) {
        // Our stdout is the protocol's: a client gone (EPIPE) ends the connection, whose sessions are still to close.
        process.stdout.off('error', exitOnEpipe);
        return await serveStdio({ worker, onClose: opts.onClose, log });
      }
      const idleSeconds = Number(opts.idleTimeout);
      if (!Number.isInteger(idleSeconds) || idleSeconds < 1) throw new Error(`--idle-timeout: expected whole seconds, at least 1, got '${opts.idleTimeout}'`);
      const at = /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d{1,5})$/.exec(opts.http);
      if (!at) throw new Error(`--http: expected host:port (127.0.0.1:8080), got '${opts.http}'`);
      const stop = new AbortController();
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
      const host = at[1]!.replace(/^\[(.*)\]$/, '$1');
      const served = await serveHttp(host, Number(at[2]), { worker, onClose: opts.onClose, log, idleSeconds }, stop.signal);
      log(`MCP over Streamable HTTP at http://${host.includes(':') ? `[${host}]` : host}:${served.port}/mcp`);
      await served.closed;
    } finally {
      worker.close();
    }
  });

/** All of a stream's bytes. */
async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** A refused call's status and details, and the likely fix when the worker could not be reached or would not listen. */
function explained(err: ClientError): string {
  const { address, token, tlsCa } = globals();
  const said = `${Status[err.code]}: ${err.details.replace(/\.? Resolution note: $/, '')}`;
  if (err.code === Status.UNAUTHENTICATED)
    return `${said}\n(the worker wants its token: ${token ? 'the one given is not it' : 'pass --token or set WORKER_AUTH_TOKEN'})`;
  if (err.code !== Status.UNAVAILABLE) return said;
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|Name resolution failed/.test(err.details))
    return `${said}\n(no worker answers at ${address}: is it running (make run)? Another address: --address or WORKER_ADDRESS)`;
  if (!tlsCa && /Connection dropped|Failed to connect|ECONNRESET|Protocol error|protocol/i.test(err.details))
    return `${said}\n(the worker at ${address} may speak TLS: pass --tls-ca with its CA certificate)`;
  if (tlsCa && /SSL|TLS|certificate|wrong version/i.test(err.details))
    return `${said}\n(TLS with the worker at ${address} failed: does it serve TLS, and did --tls-ca sign its certificate?)`;
  return said;
}

// A reader that stopped reading (`| head`) is no error: the rest is not wanted.
function exitOnEpipe(err: NodeJS.ErrnoException): void {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
}
process.stdout.on('error', exitOnEpipe);

try {
  await program.parseAsync();
} catch (err) {
  process.stderr.write(`${err instanceof ClientError ? explained(err) : (err as Error).message}\n`);
  process.exitCode = 1;
}
