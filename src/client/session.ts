import { isUtf8 } from 'node:buffer';
import { lstat, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, posix, sep } from 'node:path';
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
 *   with `exitCode`, `killedBy` and `ended`; an install that failed resolves with `ok: false`;
 * - a call the client itself gives up on (its `signal` aborted) rejects with an AbortError; the
 *   task is cancelled on the worker (`ended: 'cancelled'` is for a CancelTask from elsewhere).
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
  /** Each line of output as it is printed, with a newline (the run tools stream whole lines). */
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

/** A part copied: `bytes` of `totalBytes` of `path` so far. */
export interface CopyOptions {
  onProgress?: (progress: { path: string; bytes: number; totalBytes: number }) => void;
}

/** What a copy did: files and bytes copied, directories made for empty ones, and what it left out (never silently). */
export interface CopyResult {
  files: number;
  bytes: number;
  /** Empty directories made (others come with their files). */
  directories: number;
  /** Entries not copied (local paths for an upload, workspace paths for a download), each with why: links, special files, names that are not UTF-8. */
  skipped: { path: string; reason: string }[];
}

const SKIPPED = {
  symlink: 'a symbolic link (cp copies files and directories; make the link with run.shell)',
  other: 'not a regular file or directory',
  notUtf8: 'its name is not UTF-8, and workspace paths are UTF-8 text',
};

/** Bytes a part of a copy carries (base64 on the wire: a third more), well inside a message. */
const PART_BYTES = 8 * 1024 * 1024;

export interface FileEntry {
  /** The name (a name that is not UTF-8: with U+FFFD for its other bytes, and nameBytes). */
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  modifiedMs: number;
  /** The name's bytes, only for a name that is not UTF-8 (no workspace path can name such an entry). */
  nameBytes?: Uint8Array;
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

  /** `count` new sessions holding this one's files, packages and settings as they are now (ForkSession); processes are not copied. */
  async fork(options: { count?: number; workspaceId?: string } = {}): Promise<Session[]> {
    const reply = await this.client.sessions.forkSession({ sessionId: this.id, count: options.count ?? 1, workspaceId: options.workspaceId ?? '' });
    return reply.sessionIds.map((id) => new Session(this.client, id));
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

  /** Writes a file (text as UTF-8, bytes as they are), making its directories; `append` adds to its end. */
  async write(path: string, data: string | Uint8Array, options: { append?: boolean } = {}): Promise<{ bytesWritten: number }> {
    const args: Record<string, string> =
      typeof data === 'string' ? { path, contents: data } : { path, contents: Buffer.from(data).toString('base64'), encoding: 'base64' };
    if (options.append) args.append = 'true';
    const o = await callTool(this.client.tasks, this.sessionId, 'fs.write', args);
    return { bytesWritten: Number(o.bytes_written) };
  }

  /** Bytes of a file from `offset`, at most `length` of them, and the whole file's size. */
  async readPart(path: string, offset: number, length: number): Promise<{ bytes: Buffer; fileSize: number }> {
    const o = await callTool(this.client.tasks, this.sessionId, 'fs.read', { path, encoding: 'base64', offset: String(offset), length: String(length) });
    return { bytes: Buffer.from(o.contents ?? '', 'base64'), fileSize: Number(o.file_size) };
  }

  /**
   * Copies a local file or directory (its files and directories, recursively) into the workspace
   * at `path`, in parts of PART_BYTES. Links, special files and names that are not UTF-8 are
   * listed in `skipped`, and left out; all of them are known before anything is written.
   */
  async upload(local: string, path: string, options: CopyOptions = {}): Promise<CopyResult> {
    const done: CopyResult = { files: 0, bytes: 0, directories: 0, skipped: [] };
    const top = await stat(local);
    // Named alone, a FIFO or a device would be waited on or read as empty: refused before anything is sent.
    if (!top.isFile() && !top.isDirectory()) throw new Error(`${local} is not a regular file or directory; nothing was copied`);
    const tree = top.isDirectory() ? await localTree(local, done.skipped) : { files: [''], emptyDirectories: [] };
    await this.makeDirectories(tree.emptyDirectories.map((dir) => inside(path, dir)));
    done.directories = tree.emptyDirectories.length;
    for (const file of tree.files) {
      const to = inside(path, file);
      const handle = await open(file === '' ? local : join(local, ...file.split('/')));
      try {
        const size = (await handle.stat()).size;
        let offset = 0;
        do {
          const part = Buffer.alloc(Math.min(PART_BYTES, size - offset));
          const { bytesRead } = await handle.read(part, 0, part.length, offset);
          await this.write(to, part.subarray(0, bytesRead), { append: offset > 0 });
          offset += bytesRead;
          options.onProgress?.({ path: to, bytes: offset, totalBytes: size });
          if (bytesRead === 0) break;
        } while (offset < size);
        done.files++;
        done.bytes += offset;
      } finally {
        await handle.close();
      }
    }
    return done;
  }

  /** Makes workspace directories (with their parents) as the session, a batch of names per run.shell call. */
  private async makeDirectories(paths: string[]): Promise<void> {
    const wanted = paths.filter((p) => p !== '' && p !== '.'); // the workspace root is there
    const outside = wanted.find((p) => p.startsWith('/') || p.split('/').includes('..'));
    if (outside !== undefined)
      throw new ClientError('/codegen.v1.TaskExecution/ExecuteTask', Status.INVALID_ARGUMENT, `${JSON.stringify(outside)} is not a path in the workspace`);
    for (const batch of commandBatches(wanted.map(shellQuoted))) {
      const o = await callTool(this.client.tasks, this.sessionId, 'run.shell', { command: `sh -c ${shellQuoted(MAKE_DIRECTORIES)} sh ${batch}` });
      if (o.exit_code === '3') throw new ClientError('/codegen.v1.TaskExecution/ExecuteTask', Status.INVALID_ARGUMENT, (o.stderr ?? '').trim());
      if (o.exit_code !== '0')
        throw new ClientError('/codegen.v1.TaskExecution/ExecuteTask', Status.FAILED_PRECONDITION, `cannot make directories: ${(o.stderr ?? '').trim()}`);
    }
  }

  /**
   * Copies a workspace file or directory (its files, recursively) to `local` (into it, when it is
   * a directory there), in parts of PART_BYTES. A file that changes size between parts (session
   * code writing it) is refused, ABORTED, rather than copied torn; nothing partial is left. Empty
   * directories are made; links, special files and names that are not UTF-8 are listed in
   * `skipped`, and left out.
   */
  async download(path: string, local: string, options: CopyOptions = {}): Promise<CopyResult> {
    const done: CopyResult = { files: 0, bytes: 0, directories: 0, skipped: [] };
    const directory = await this.isDirectory(path);
    const target = (await stat(local).catch(() => undefined))?.isDirectory() ? join(local, posix.basename(path.replace(/\/+$/, '')) || 'workspace') : local;
    const tree: WorkspaceTree = directory ? await this.treeUnder(path, '', done.skipped) : { files: [''], emptyDirectories: [] };
    for (const dir of tree.emptyDirectories) await mkdir(join(target, ...dir.split('/')), { recursive: true });
    done.directories = tree.emptyDirectories.length;
    if (directory) await mkdir(target, { recursive: true });
    for (const file of tree.files) {
      const from = inside(path, file);
      const to = file === '' ? target : join(target, ...file.split('/'));
      await mkdir(dirname(to), { recursive: true });
      const partial = `${to}.part-${process.pid}`;
      const handle = await open(partial, 'w');
      try {
        let offset = 0;
        let size: number | undefined;
        for (;;) {
          const { bytes, fileSize } = await this.readPart(from, offset, PART_BYTES);
          if (size !== undefined && fileSize !== size)
            throw new ClientError(
              '/codegen.v1.TaskExecution/ExecuteTask',
              Status.ABORTED,
              `${from} changed size while being copied (${size} → ${fileSize} bytes); copy it again`,
            );
          size = fileSize;
          await handle.write(bytes, 0, bytes.length, offset);
          offset += bytes.length;
          options.onProgress?.({ path: from, bytes: offset, totalBytes: fileSize });
          if (bytes.length === 0 || offset >= fileSize) break;
        }
        done.files++;
        done.bytes += offset;
      } catch (err) {
        await handle.close();
        await rm(partial, { force: true });
        throw err;
      }
      await handle.close();
      await rename(partial, to);
    }
    return done;
  }

  /** Whether `path` is a workspace directory (or a link the fs tools follow to one). */
  private async isDirectory(path: string): Promise<boolean> {
    if (path === '' || path === '.') return true;
    const trimmed = path.replace(/\/+$/, '');
    const slash = trimmed.lastIndexOf('/');
    const [parent, name] = slash < 0 ? ['.', trimmed] : [trimmed.slice(0, slash) || '/', trimmed.slice(slash + 1)];
    const entry = (await this.list(parent)).find((e) => e.name === name);
    if (entry?.type !== 'symlink') return entry?.type === 'directory';
    return this.list(trimmed).then(
      () => true,
      () => false,
    );
  }

  /** The files and empty directories below a workspace directory (paths relative to it); what cannot be copied goes to `skipped`. */
  private async treeUnder(path: string, prefix: string, skipped: CopyResult['skipped']): Promise<WorkspaceTree> {
    const tree: WorkspaceTree = { files: [], emptyDirectories: [] };
    const entries = await this.list(inside(path, prefix)).catch((err: unknown) => {
      // A directory the worker will not list (a path past its length limit) is named, and the rest copied.
      if (prefix === '' || !(err instanceof ClientError) || err.code !== Status.INVALID_ARGUMENT) throw err;
      skipped.push({ path: inside(path, prefix), reason: err.details });
      return undefined;
    });
    if (!entries) return tree;
    for (const entry of entries) {
      const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (entry.nameBytes) skipped.push({ path: inside(path, rel), reason: SKIPPED.notUtf8 });
      else if (entry.type === 'file') tree.files.push(rel);
      else if (entry.type === 'directory') {
        const below = await this.treeUnder(path, rel, skipped);
        tree.files.push(...below.files);
        tree.emptyDirectories.push(...below.emptyDirectories);
      } else skipped.push({ path: inside(path, rel), reason: SKIPPED[entry.type] });
    }
    if (entries.length === 0 && prefix !== '') tree.emptyDirectories.push(prefix);
    return tree;
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
    type Listed = { name: string; type: FileEntry['type']; size: number; modified_ms: number; name_base64?: string };
    return (JSON.parse(o.entries_json ?? '[]') as Listed[]).map((e) => ({
      name: e.name,
      type: e.type,
      size: e.size,
      modifiedMs: e.modified_ms,
      ...(e.name_base64 === undefined ? {} : { nameBytes: Buffer.from(e.name_base64, 'base64') }),
    }));
  }
}

/** Files and empty directories of a tree, as `/`-separated paths relative to its top. */
interface WorkspaceTree {
  files: string[];
  emptyDirectories: string[];
}

/** `rel` (`/`-separated, '' for `path` itself) below a workspace path, as given: nothing folded (`a/../b` stays for the worker to refuse). */
function inside(path: string, rel: string): string {
  if (rel === '') return path;
  const base = path.replace(/\/+$/, '');
  return base === '' || base === '.' ? rel : `${base}/${rel}`;
}

/**
 * A local directory's files and empty directories (paths relative to it, `/`-separated); links,
 * special files and names that are not UTF-8 (read as bytes, so they are seen) go to `skipped`.
 */
async function localTree(top: string, skipped: CopyResult['skipped']): Promise<WorkspaceTree> {
  const tree: WorkspaceTree = { files: [], emptyDirectories: [] };
  const visit = async (rel: Buffer[]): Promise<void> => {
    const dir = Buffer.concat([Buffer.from(top), ...rel.flatMap((name) => [Buffer.from(sep), name])]);
    const names = await readdir(dir, { encoding: 'buffer' });
    if (names.length === 0) tree.emptyDirectories.push(rel.map(String).join('/')); // '' for an empty top: made too
    for (const name of names.sort((a, b) => Buffer.compare(a, b))) {
      const path = [...rel, name];
      const text = path.map(String).join('/');
      const st = await lstat(Buffer.concat([dir, Buffer.from(sep), name]));
      if (!path.every((n) => isUtf8(n))) skipped.push({ path: join(top, text), reason: SKIPPED.notUtf8 });
      else if (st.isFile()) tree.files.push(text);
      else if (st.isDirectory()) await visit(path);
      else skipped.push({ path: join(top, text), reason: st.isSymbolicLink() ? SKIPPED.symlink : SKIPPED.other });
    }
  };
  await visit([]);
  return tree;
}

/**
 * mkdir -p of its arguments (workspace paths, relative to the workspace, its cwd), refusing
 * (exit 3) any a link would lead out of the workspace: what the fs tools refuse, run.shell
 * would otherwise do.
 */
const MAKE_DIRECTORIES = [
  'root=$(pwd -P) || exit 1',
  'for d; do',
  '  case $(realpath -m -- "$d") in "$root" | "$root"/*) ;; *) printf "%s is not a directory in the workspace (a link leads out of it)\\n" "$d" >&2; exit 3 ;; esac',
  'done',
  'exec mkdir -p -- "$@"',
].join('\n');

/** Bytes of one run.shell command (it takes 64 KiB), with room for the script around the words. */
const COMMAND_BYTES = 56 * 1024;

/** Shell words joined into commands of at most COMMAND_BYTES each. */
function commandBatches(words: string[]): string[] {
  const batches: string[] = [];
  let current = '';
  for (const word of words) {
    if (current !== '' && Buffer.byteLength(current) + 1 + Buffer.byteLength(word) > COMMAND_BYTES) {
      batches.push(current);
      current = '';
    }
    current = current === '' ? word : `${current} ${word}`;
  }
  if (current !== '') batches.push(current);
  return batches;
}

/** `text` as one word for /bin/sh, whatever it holds. */
function shellQuoted(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/** A task's constraints from a timeout in milliseconds (whole seconds, at least 1). */
function constraintsOf(timeoutMs: number | undefined) {
  return { timeoutSeconds: timeoutMs ? Math.max(1, Math.ceil(timeoutMs / 1000)) : 0, maxMemoryMb: 0, maxCpuPercent: 0 };
}
