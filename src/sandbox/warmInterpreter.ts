import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from '../logger.js';
import type { Cgroup } from './cgroups.js';
import { captureOutput, exitCodeOf } from './outputCapture.js';
import type { ProcessResult, ProcessSpec, RunOptions } from './runProcess.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

interface PendingRun {
  forked: Deferred<number>;
  exit: Deferred<{ code: number | null; signal: number | null; connected: boolean }>;
  streams: { stdout: Deferred<Readable>; stderr: Deferred<Readable> };
}

type ZygoteEvent = { ev: 'ready' } | { ev: 'forked'; id: number; pid: number } | { ev: 'exit'; id: number; code: number | null; signal: number | null; connected: boolean };

/** The warm interpreter could not take the call (it is not running); nothing of the call ran. */
export class WarmUnavailableError extends Error {
  override name = 'WarmUnavailableError';
}

/** The host pid of a process that is `nsPid` in its own pid namespace, searched below `ancestor`. */
async function hostPidBelow(ancestor: number, nsPid: number, depth: number): Promise<number | undefined> {
  const children = (await readFile(`/proc/${ancestor}/task/${ancestor}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean).map(Number);
  for (const pid of children) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).map(Number);
    if (nspid && nspid[nspid.length - 1] === nsPid) return pid;
  }
  if (depth <= 1) return undefined;
  for (const pid of children) {
    const found = await hostPidBelow(pid, nsPid, depth - 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * A session's warm interpreter: a zygote (zygote.ts) running in the session's sandbox, asked over
 * its stdin to fork one fresh child per call. Each child joins the task's cgroup before it runs
 * anything, so limits, usage and killing work as for a cold process; its output arrives over a
 * Unix socket the worker listens on, one connection per stream.
 */
export class WarmInterpreter {
  private readonly pending = new Map<number, PendingRun>();
  private readonly byToken = new Map<string, PendingRun>();
  private nextId = 1;
  private dead = false;

  private constructor(
    private readonly process: ChildProcess,
    private readonly server: Server,
    private readonly socketPath: string,
    private zygoteHostPid: number,
  ) {}

  get alive(): boolean {
    return !this.dead;
  }

  /**
   * Starts the zygote. `launch` is the confined command for `python -u -c <zygote> <socket>`,
   * given the socket path as the zygote will see it.
   */
  static async start(socketPath: string, owner: { uid: number; gid: number } | undefined, launch: ProcessSpec, logger: Logger): Promise<WarmInterpreter> {
    await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
    await rm(socketPath, { force: true });
    let instance: WarmInterpreter | undefined;
    const server = createServer((socket) => instance?.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    if (owner) await chown(socketPath, owner.uid, owner.gid);

    const child = spawn(launch.executable, launch.args, { cwd: launch.cwd, env: launch.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    instance = new WarmInterpreter(child, server, socketPath, 0);
    const ready = deferred<void>();
    let buffered = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      buffered += text;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const event = JSON.parse(buffered.slice(0, newline)) as ZygoteEvent;
        buffered = buffered.slice(newline + 1);
        if (event.ev === 'ready') ready.resolve();
        else instance!.onEvent(event);
      }
    });
    child.stderr!.setEncoding('utf8');
    let stderr = '';
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-4096);
      logger.debug('warm interpreter stderr', { text });
    });
    child.stdin!.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      instance!.fail(new Error(`the warm interpreter exited (${exitCodeOf(code, signal)}): ${stderr.trim()}`));
      ready.reject(new Error(`the warm interpreter did not start (${exitCodeOf(code, signal)}): ${stderr.trim()}`));
    });
    const timer = setTimeout(() => ready.reject(new Error('the warm interpreter did not start within 20 s')), 20_000);
    try {
      await ready.promise;
    } catch (err) {
      await instance.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    // In a pid namespace the zygote is bwrap's grandchild; without one it is the process itself.
    instance.zygoteHostPid = (await hostPidBelow(child.pid!, 2, 3)) ?? child.pid!;
    return instance;
  }

  /** Runs code in a fresh child that joins `group` first; resolves when it has exited. */
  async run(code: string, options: RunOptions, group: Cgroup): Promise<ProcessResult> {
    if (this.dead) throw new WarmUnavailableError('the warm interpreter is not running');
    const id = this.nextId++;
    const token = randomBytes(16).toString('hex');
    const run: PendingRun = { forked: deferred(), exit: deferred(), streams: { stdout: deferred(), stderr: deferred() } };
    this.pending.set(id, run);
    this.byToken.set(token, run);
    const kill = () => {
      this.send({ op: 'kill', id });
      void group.killProcesses();
    };
    try {
      this.send({ op: 'run', id, token, code });
      const nsPid = await run.forked.promise.catch((err: Error) => {
        throw new WarmUnavailableError(err.message);
      });
      const hostPid = (await hostPidBelow(this.zygoteHostPid, nsPid, 1)) ?? nsPid;
      await group.addProcess(hostPid);
      options.onStart?.({ pid: hostPid, marker: '' });
      if (options.signal.aborted) kill();
      options.signal.addEventListener('abort', kill, { once: true });
      this.send({ op: 'go', id });

      // A child killed before it connected never sends its streams: they end empty.
      const empty = () => {
        const stream = new PassThrough();
        stream.end();
        return stream;
      };
      void run.exit.promise.then(({ connected }) => {
        if (connected) return;
        run.streams.stdout.resolve(empty());
        run.streams.stderr.resolve(empty());
      });
      const [stdout, stderr] = await Promise.all([run.streams.stdout.promise, run.streams.stderr.promise]);
      const capture = captureOutput(stdout, stderr, options, kill);
      capture.catch(() => undefined);
      const exit = await run.exit.promise;
      // What the code left running dies with it, which also closes the sockets it held.
      await group.killProcesses();
      const { stdout: out, stderr: err, outputLimitExceeded } = await capture;
      return { exitCode: exit.code ?? 128 + (exit.signal ?? 0), stdout: out, stderr: err, outputLimitExceeded };
    } finally {
      options.signal.removeEventListener('abort', kill);
      this.pending.delete(id);
      this.byToken.delete(token);
    }
  }

  async close(): Promise<void> {
    this.dead = true;
    this.process.stdin?.end();
    try {
      if (this.process.pid !== undefined && this.process.exitCode === null) process.kill(-this.process.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.socketPath, { force: true });
  }

  private send(message: object): void {
    this.process.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  private onEvent(event: ZygoteEvent): void {
    if (event.ev === 'ready') return;
    const run = this.pending.get(event.id);
    if (!run) return;
    if (event.ev === 'forked') run.forked.resolve(event.pid);
    else run.exit.resolve({ code: event.code, signal: event.signal, connected: event.connected });
  }

  private accept(socket: Socket): void {
    let header = '';
    const onData = (chunk: Buffer) => {
      header += chunk.toString('latin1');
      const newline = header.indexOf('\n');
      if (newline === -1) {
        if (header.length > 200) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      const [token, stream] = header.slice(0, newline).split(' ');
      const run = this.byToken.get(token ?? '');
      if (!run || (stream !== 'stdout' && stream !== 'stderr')) {
        socket.destroy();
        return;
      }
      const rest = Buffer.from(header.slice(newline + 1), 'latin1');
      if (rest.length > 0) socket.unshift(rest);
      run.streams[stream].resolve(socket);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  }

  private fail(err: Error): void {
    this.dead = true;
    for (const run of this.pending.values()) {
      run.forked.reject(err);
      run.exit.resolve({ code: null, signal: 9, connected: false });
    }
  }
}
