import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from '../../logger.js';
import type { Cgroup } from '../confine/cgroups.js';
import { captureOutput } from '../process/outputCapture.js';
import { MAX_TASK_GROUPS } from '../confine/taskGroups.js';
import { startProcess } from '../process/runProcess.js';
import { cgroupsOf, childByNamespacePid, childrenOf, namespaceChild, processState, zombieWaitStatus } from '../process/procfs.js';
import type { ProcessResult, ProcessSpec, RunOptions } from '../process/processSpec.js';
import { LineSplitter, parseZygoteEvent, ZygoteProtocolError, type ZygoteEvent } from './zygoteProtocol.js';
import type { Owner } from '../../storage/owner.js';
import { deferred, type Deferred } from '../../deferred.js';
import { setTimeout as delay } from 'node:timers/promises';

interface ExitInfo {
  code: number | null;
  signal: number | null;
  connected: boolean;
}

interface PendingRun {
  /** The child's pid in the sandbox, or undefined when the zygote was refused one (the session's process limit). */
  forked: Deferred<number | undefined>;
  /** The zygote opened the child's gate (it took the `go`). */
  went: Deferred<void>;
  exit: Deferred<ExitInfo>;
  streams: { stdout: Deferred<Socket>; stderr: Deferred<Socket> };
  /** Streams already connected (a second connection for one is refused). */
  connected: Set<string>;
  /** The pid the zygote named as its child. */
  named?: number;
}

/**
 * Where the warm interpreter places the child its zygote forks ahead of a call: moving a process
 * between cgroups waits for the kernel (an RCU grace period on cgroup v1, milliseconds), which
 * a call whose child is already in its group does not. A session's TaskGroups.
 */
export interface AheadGroups {
  /** A group if one is free now (never waiting); undefined otherwise (the call then moves its child). */
  reserve(): Promise<Cgroup> | undefined;
  /** Takes back a group no call claimed (its processes are killed). */
  giveBack(group: Cgroup | undefined): void;
}

/** A child the zygote forked ahead of its call, and the group it is placed in. */
interface AheadChild {
  nsPid: number;
  group: Promise<Cgroup | undefined>;
  /** Whether the child got into the group. */
  placed: Promise<boolean>;
  /** Its host pid, once it is in the group. */
  hostPid?: number;
}

/** The warm interpreter could not take the call (it is not running); nothing of the call ran. */
export class WarmUnavailableError extends Error {
  override name = 'WarmUnavailableError';
}

/** Bytes queued for the zygote's stdin past which it counts as not listening. */
const MAX_PENDING_INPUT = 64 * 1024 * 1024;
/** How long a child's output may take to end after the child and its task group are gone. */
const STREAM_DRAIN_MS = 2000;
/** What a warm call runs: code, as `python -` would, or a program exec'd from the forked child. */
export type WarmProgram = { code: string } | { exec: { argv: string[]; cwd: string; env: Record<string, string>; stdin?: string } };

const KILLED: ExitInfo = { code: null, signal: 9, connected: false };
/** A call the zygote could fork no child for: the session was at its process limit (killed_by=pids). */
const FORK_REFUSED: ProcessResult = {
  exitCode: 1,
  stdout: { text: '', truncated: false },
  stderr: { text: 'fork: the session is at its process limit; no process could be made for this call\n', truncated: false },
  outputLimitExceeded: false,
  forkRefused: true,
};
/** How long a connection to the output socket may take to say which run and stream it is. */
const HEADER_MS = 5000;
/** Connections one zygote's socket holds at most: two per run in flight, as many runs as a session may hold task groups. */
const MAX_CONNECTIONS = 2 * MAX_TASK_GROUPS;
/** How often a call waiting on the zygote looks at it (stopped?) and at its child (exited?). */
const ANSWER_CHECK_MS = 100;
/** How long a running zygote may take to take a call, or to report a child that has exited. */
const ANSWER_MS = 5000;

const isStopped = (pid: number) => ['T', 't'].includes(processState(pid) ?? '');

/** How an exited, unreaped child (a zombie) ended; undefined when it is gone or still running. */
function zombieExit(pid: number): ExitInfo | undefined {
  const status = zombieWaitStatus(pid);
  if (status === undefined) return undefined;
  const signal = status & 0x7f;
  return signal === 0 ? { code: (status >> 8) & 0xff, signal: null, connected: false } : { code: null, signal, connected: false };
}

/** The host pid of a process that is `nsPid` in its own pid namespace, searched below `ancestor`. */
async function hostPidBelow(ancestor: number, nsPid: number, depth: number): Promise<number | undefined> {
  const found = childByNamespacePid(ancestor, nsPid);
  if (found !== undefined || depth <= 1) return found;
  for (const pid of childrenOf(ancestor)) {
    const below = await hostPidBelow(pid, nsPid, depth - 1);
    if (below !== undefined) return below;
  }
  return undefined;
}

/**
 * Resolves with `value` once `signal` aborts (never, if it does not) until the function it adds
 * to `stops` is called. A task's signal outlives its run: the task is running until its client
 * takes its result, and a cancel or timeout meanwhile must not reach the task group its run gave
 * back (the group's next call would be killed).
 */
function onAbort<T>(signal: AbortSignal, value: () => Promise<T>, stops: (() => void)[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const fire = () => void value().then(resolve, reject);
    if (signal.aborted) return fire();
    signal.addEventListener('abort', fire, { once: true });
    stops.push(() => signal.removeEventListener('abort', fire));
  });
}

function emptyStream(): Readable {
  const stream = new PassThrough();
  stream.end();
  return stream;
}

/**
 * A session's warm interpreter: a zygote (zygote.py) running in the session's sandbox, asked over
 * its stdin to fork one fresh child per call. Each child joins the task's cgroup before it runs
 * anything, so limits, usage and killing work as for a cold process; its output arrives over a
 * Unix socket the worker listens on, one connection per stream. The child the zygote forks
 * ahead of the next call is placed in a task group when it is forked (AheadGroups), and a call
 * that narrows no limit runs in that group (claimAhead), its child already there.
 *
 * The zygote is the session's (its uid, its imports): nothing it says is believed unchecked
 * (zygoteProtocol.ts), a pid it names is used only if it is its own child running as the
 * session's uid, and no wait on it outlasts the task's AbortSignal. A zygote that breaks the
 * protocol is killed; its calls fail and the next call starts a new one.
 */
export class WarmInterpreter {
  private readonly pending = new Map<number, PendingRun>();
  private readonly byToken = new Map<string, PendingRun>();
  private nextId = 1;
  private dead = false;
  /** Whether the zygote has said ready (once; again is a breach). */
  started = false;
  /** Events about runs no longer waiting (late but legitimate after a kill), bounded. */
  private strayEvents = 0;
  /** The child forked ahead, placed (or being placed) in a group no call has claimed. */
  private ahead: AheadChild | undefined;
  /** Children forked ahead whose groups calls claimed, by group, until the call runs. */
  private readonly claimedAhead = new Map<Cgroup, AheadChild>();
  /** Placements of children forked ahead under way, by the child's pid in the sandbox. */
  private readonly aheadPlacing = new Map<number, Promise<boolean>>();
  /** Pids (in the sandbox) the zygote named as calls' children, for calls still running. */
  private readonly namedByRuns = new Set<number>();
  /** A child forked ahead reported before the zygote's host pid was known. */
  private unplacedAhead: number | undefined;
  /** Children forked ahead reported: one at the start and at most two per call after. */
  private aheadEvents = 0;
  /** The zygote's /proc/<pid>/cgroup, read on first need. */
  private zygoteGroups: string | undefined;

  private constructor(
    private readonly process: ChildProcess,
    private readonly server: Server,
    private readonly socketPath: string,
    private readonly owner: Owner | undefined,
    private readonly logger: Logger,
    private zygoteHostPid: number,
    private readonly groups: AheadGroups | undefined,
  ) {}

  get alive(): boolean {
    return !this.dead;
  }

  /**
   * Starts the zygote. `launch` is the confined command for `python -u -c <zygote> <socket>`,
   * given the socket path as the zygote will see it.
   */
  static async start(socketPath: string, owner: Owner | undefined, launch: ProcessSpec, logger: Logger, groups?: AheadGroups): Promise<WarmInterpreter> {
    await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
    await rm(socketPath, { force: true });
    let instance: WarmInterpreter | undefined;
    const server = createServer((socket) => instance?.accept(socket));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    if (owner) await chown(socketPath, owner.uid, owner.gid);

    const child = startProcess(launch);
    instance = new WarmInterpreter(child, server, socketPath, owner, logger, 0, groups);
    const ready = deferred<void>();
    const lines = new LineSplitter();
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      if (!instance.alive) return;
      try {
        for (const line of lines.push(text)) {
          const event = parseZygoteEvent(line);
          if (event.ev !== 'ready') instance.onEvent(event);
          else if (!instance.started) instance.started = true;
          else throw new ZygoteProtocolError('it said ready twice');
          if (event.ev === 'ready') ready.resolve();
        }
      } catch (err) {
        const broken = err instanceof ZygoteProtocolError ? err : new ZygoteProtocolError(String(err));
        ready.reject(broken);
        instance.breakOff(broken);
      }
    });
    child.stderr!.setEncoding('utf8');
    let stderr = '';
    child.stderr!.on('data', (text: string) => (stderr = (stderr + text).slice(-4096)));
    child.stdin!.on('error', () => undefined);
    child.once('error', (err) => {
      instance.fail(err);
      ready.reject(err);
    });
    child.once('exit', () => {
      const why = `the warm interpreter exited: ${stderr.trim().slice(-500)}`;
      instance.fail(new Error(why));
      ready.reject(new Error(why));
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
    if (instance.unplacedAhead !== undefined) instance.placeAhead(instance.unplacedAhead);
    return instance;
  }

  /**
   * Runs code (or execs a program: `argv` in `cwd` with exactly `env`) in a fresh child that
   * joins `group` first; resolves when it has exited.
   */
  async run(program: WarmProgram, options: RunOptions, group: Cgroup): Promise<ProcessResult> {
    const ahead = this.claimedAhead.get(group);
    this.claimedAhead.delete(group);
    if (this.dead) throw new WarmUnavailableError('the warm interpreter is not running');
    const id = this.nextId++;
    const token = randomBytes(16).toString('hex');
    const run: PendingRun = {
      forked: deferred(),
      went: deferred(),
      exit: deferred(),
      streams: { stdout: deferred(), stderr: deferred() },
      connected: new Set(),
    };
    this.pending.set(id, run);
    this.byToken.set(token, run);
    const kill = () => {
      this.send({ op: 'kill', id });
      void group.killProcesses();
    };
    const sockets: Socket[] = [];
    const watching: (() => void)[] = [];
    try {
      this.send({ op: 'run', id, token, ...program });
      watching.push(this.watchTaking(run.forked.promise));
      // Aborted before the child is placed: nothing of the code ran; the abort is the outcome.
      const forked = await Promise.race([run.forked.promise.then((pid) => ({ pid })), onAbort(options.signal, async () => undefined, watching)]).catch(
        (err: Error) => {
          throw new WarmUnavailableError(err.message);
        },
      );
      if (!forked) {
        this.send({ op: 'kill', id });
        options.signal.throwIfAborted();
      }
      if (forked!.pid === undefined) return FORK_REFUSED;
      // The child forked ahead into this group is there already, checked as the zygote's own
      // when it was placed (the zygote may have given it to another call, or forked this one
      // afresh: then it is checked now, and moves once a placement of it is over).
      await this.aheadPlacing.get(forked!.pid);
      const placed = ahead?.nsPid === forked!.pid && (await ahead.placed) && ahead.hostPid !== undefined && group.holds(ahead.hostPid);
      const hostPid = placed ? ahead.hostPid! : this.ownChild(forked!.pid);
      watching.push(this.watchExit(run, hostPid));
      if (!placed) await this.place(group, hostPid);
      options.onStart?.({ pid: forked!.pid, marker: '' });
      // From here on, an abort ends the child whatever the zygote does (or does not) say.
      const killed = onAbort(
        options.signal,
        async () => {
          kill();
          await group.killProcesses();
          return KILLED;
        },
        watching,
      );
      await options.recorded;
      this.send({ op: 'go', id });
      watching.push(this.watchTaking(run.went.promise));
      options.phases?.mark('fork');

      const exit = Promise.race([run.exit.promise, killed]);
      // A child killed before it connected never sends its streams: they end empty. One said to
      // have connected gets a moment to show it; a zygote claiming what did not happen is cut off.
      const connected = Promise.all([run.streams.stdout.promise, run.streams.stderr.promise]);
      const streams = await Promise.race([
        connected,
        exit.then(async (e) => {
          if (!e.connected) return undefined;
          const late = await Promise.race([connected, delay(STREAM_DRAIN_MS).then(() => undefined)]);
          if (!late) this.breakOff(new ZygoteProtocolError("it said a child's streams connected, and they did not"));
          return late;
        }),
      ]);
      if (streams) sockets.push(...streams);
      const capture = captureOutput(streams?.[0] ?? emptyStream(), streams?.[1] ?? emptyStream(), options, kill);
      capture.catch(() => undefined);
      const ended = await exit;
      options.phases?.mark('run');
      // What the code left running dies with it, which also closes the sockets it held; a
      // stream something else keeps open is cut after a short wait.
      await group.killProcesses();
      const drained = setTimeout(() => sockets.forEach((s) => s.destroy()), STREAM_DRAIN_MS);
      try {
        const { stdout: out, stderr: err, outputLimitExceeded } = await capture;
        return { exitCode: ended.code ?? 128 + (ended.signal ?? 0), stdout: out, stderr: err, outputLimitExceeded };
      } finally {
        clearTimeout(drained);
      }
    } finally {
      for (const stop of watching) stop();
      if (run.named !== undefined) this.namedByRuns.delete(run.named);
      this.pending.delete(id);
      this.byToken.delete(token);
      for (const socket of sockets) socket.destroy();
    }
  }

  /**
   * Moves the call's child into its task group. A child gone before it got there (killed by the
   * session's own code, or ended with its zygote) ran nothing of the call: the call is run
   * elsewhere (WarmUnavailableError), as a call the zygote could not take.
   */
  private async place(group: Cgroup, hostPid: number): Promise<void> {
    try {
      await group.addProcess(hostPid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      throw new WarmUnavailableError("the call's child ended before it was placed in its task group");
    }
  }

  /**
   * The host pid of the zygote's child that is `nsPid` in the sandbox, checked to run as the
   * session's uid: a zygote naming any other process breaks the protocol (it would otherwise
   * have the worker move, and later kill, a process of the host). The check and the move are
   * microseconds apart; a pid reused in between would need the whole pid space cycled.
   */
  private ownChild(nsPid: number): number {
    const hostPid = this.childOfOwn(nsPid);
    if (hostPid === undefined) {
      const broken = new ZygoteProtocolError(`it named pid ${nsPid}, which is not a child of its own`);
      this.breakOff(broken);
      throw new WarmUnavailableError(broken.message);
    }
    return hostPid;
  }

  /** The host pid of the zygote's child `nsPid` running as the session's uid; undefined when there is none. */
  private childOfOwn(nsPid: number): number | undefined {
    const child = namespaceChild(this.zygoteHostPid, nsPid);
    if (!child || child.status.ppid !== this.zygoteHostPid || (this.owner && child.status.uid !== this.owner.uid)) return undefined;
    return child.pid;
  }

  /**
   * Places a child the zygote forked ahead in a task group, off any call's path: the group an
   * earlier one no call claimed was placed in, else one free now. Only a waiting child is
   * placed (waitingChild): the zygote is the session's, and naming a call's running child would
   * move it out of that call's group. A call given this child waits for its placement to end
   * before it moves it (run).
   */
  private placeAhead(nsPid: number): void {
    if (!this.groups || this.dead) return;
    if (!this.zygoteHostPid) {
      this.unplacedAhead = nsPid;
      return;
    }
    this.unplacedAhead = undefined;
    if (this.waitingChild(nsPid) === undefined) return;
    const previous = this.ahead;
    const group = previous?.group ?? this.groups.reserve()?.catch(() => undefined) ?? Promise.resolve(undefined);
    const child: AheadChild = { nsPid, group, placed: Promise.resolve(false) };
    const placed = (previous?.placed ?? Promise.resolve(false))
      .then(() => group)
      .then(async (g) => {
        // Looked at again just before the move: a call may have been given it meanwhile.
        const hostPid = this.waitingChild(nsPid);
        if (!g || hostPid === undefined || this.dead) return false;
        await g.addProcess(hostPid);
        child.hostPid = hostPid;
        return true;
      })
      .catch(() => false);
    child.placed = placed;
    this.aheadPlacing.set(nsPid, placed);
    void placed.then(() => this.aheadPlacing.get(nsPid) === placed && this.aheadPlacing.delete(nsPid));
    this.ahead = child;
  }

  /**
   * The host pid of `nsPid` if it is a child waiting for its call: the zygote's own, as the
   * session's uid, named by no run, and still in the zygote's own cgroup (no call's group).
   */
  private waitingChild(nsPid: number): number | undefined {
    if (this.namedByRuns.has(nsPid)) return undefined;
    const hostPid = this.childOfOwn(nsPid);
    if (hostPid === undefined) return undefined;
    // The zygote's own groups, read once: only the worker moves processes, and it never moves the zygote.
    this.zygoteGroups ??= cgroupsOf(this.zygoteHostPid);
    return this.zygoteGroups !== undefined && cgroupsOf(hostPid) === this.zygoteGroups ? hostPid : undefined;
  }

  async claimAhead(): Promise<Cgroup | undefined> {
    const ahead = this.ahead;
    if (!ahead || this.dead) return undefined;
    this.ahead = undefined;
    const group = await ahead.group;
    if (group) this.claimedAhead.set(group, ahead);
    return group;
  }

  /** Gives back the group of a child forked ahead that no call claimed. */
  private releaseAhead(): void {
    const ahead = this.ahead;
    this.ahead = undefined;
    if (ahead && this.groups) void ahead.placed.then(() => ahead.group).then((group) => group && this.groups!.giveBack(group));
  }

  async close(): Promise<void> {
    this.dead = true;
    this.releaseAhead();
    this.process.stdin?.end();
    try {
      if (this.process.pid !== undefined && this.process.exitCode === null) process.kill(-this.process.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.socketPath, { force: true });
    // A socket directory of its own (paths too long for the session's control dir) goes too.
    if (this.socketPath.startsWith(`${tmpdir()}/codegen-`)) await rm(dirname(this.socketPath), { recursive: true, force: true });
  }

  private send(message: object): void {
    const stdin = this.process.stdin;
    if (!stdin || this.dead) return;
    if (stdin.writableLength > MAX_PENDING_INPUT) {
      this.breakOff(new ZygoteProtocolError('it stopped reading its input'));
      return;
    }
    stdin.write(`${JSON.stringify(message)}\n`);
  }

  private onEvent(event: Exclude<ZygoteEvent, { ev: 'ready' }>): void {
    if (event.ev === 'ahead') {
      // One at the start, and per call at most two: one forked while it runs long, and one after
      // its exit (if the session's code killed the first).
      if (++this.aheadEvents > 2 * this.nextId) throw new ZygoteProtocolError('it reported more children forked ahead than calls');
      this.placeAhead(event.pid);
      return;
    }
    const run = this.pending.get(event.id);
    if (!run) {
      // A run the worker gave up on may still be reported, at most thrice (forked or refused, went, exit):
      // more, or about runs never asked for, is a zygote flooding the worker's event loop.
      if (event.id >= this.nextId || ++this.strayEvents > 3 * (this.nextId - 1)) throw new ZygoteProtocolError('it reported runs it was not asked for');
      return;
    }
    if (event.ev === 'forked') {
      this.namedByRuns.add(event.pid);
      run.named = event.pid;
      run.forked.resolve(event.pid);
    } else if (event.ev === 'refused') run.forked.resolve(undefined);
    else if (event.ev === 'went') run.went.resolve();
    else run.exit.resolve({ code: event.code, signal: event.signal, connected: event.connected });
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    // Connections are only for runs waiting for their streams, and must name one at once.
    if (this.byToken.size === 0) {
      socket.destroy();
      return;
    }
    const deadline = setTimeout(() => socket.destroy(), HEADER_MS);
    socket.once('close', () => clearTimeout(deadline));
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
      clearTimeout(deadline);
      const [token, stream] = header.slice(0, newline).split(' ');
      const run = this.byToken.get(token ?? '');
      if (!run || (stream !== 'stdout' && stream !== 'stderr') || run.connected.has(stream)) {
        socket.destroy();
        return;
      }
      run.connected.add(stream);
      const rest = Buffer.from(header.slice(newline + 1), 'latin1');
      if (rest.length > 0) socket.unshift(rest);
      run.streams[stream].resolve(socket);
    };
    socket.on('data', onData);
  }

  /**
   * Until the zygote answers (`forked` for a call, `went` for its go): a zygote stopped
   * (SIGSTOP, by session code: it is its code's parent), or silent for ANSWER_MS (jammed:
   * looping, not reading), is replaced; a call not yet forked then runs cold
   * (WarmUnavailableError), one forked ends as killed. Returns what ends the watch.
   */
  private watchTaking(answer: Promise<unknown>): () => void {
    return this.watch(answer, (waitedMs) => {
      if (isStopped(this.zygoteHostPid)) return 'it was stopped';
      return waitedMs >= ANSWER_MS ? `it did not take a call within ${ANSWER_MS / 1000} s` : undefined;
    });
  }

  /**
   * Until the zygote reports the call's child exited: once the child has exited (a zombie, not
   * reaped) while the zygote is stopped, or for ANSWER_MS while it runs, the call ends as the
   * child did (its wait status read from /proc) and the zygote is replaced.
   */
  private watchExit(run: PendingRun, hostPid: number): () => void {
    let exitedAt: number | undefined;
    return this.watch(run.exit.promise, (waitedMs) => {
      const state = processState(hostPid);
      if (state !== undefined && state !== 'Z') return (exitedAt = undefined);
      exitedAt ??= waitedMs;
      // A zombie under a stopped zygote will never be reaped; a child gone without its event
      // (reaped just before a stop, the event still in the pipe) gets the time to be reported.
      const stuck = state === 'Z' && isStopped(this.zygoteHostPid);
      if (!stuck && waitedMs - exitedAt < ANSWER_MS) return undefined;
      const ended = zombieExit(hostPid);
      run.exit.resolve(ended ? { ...ended, connected: run.connected.size === 2 } : KILLED);
      return 'it did not report an exited child';
    });
  }

  /**
   * Checks every ANSWER_CHECK_MS, until `answered` settles, whether the zygote has stopped
   * answering (`check` says why); if so it is replaced. Nothing runs on a call that is answered
   * within the first interval, the usual case. Returns what ends the watch early.
   */
  private watch(answered: Promise<unknown>, check: (waitedMs: number) => string | undefined): () => void {
    const started = performance.now();
    const timer = setInterval(() => {
      if (this.dead) return clearInterval(timer);
      const why = check(performance.now() - started);
      if (why === undefined) return;
      clearInterval(timer);
      this.logger.warn('warm interpreter stopped answering; it is replaced', { reason: why });
      this.fail(new WarmUnavailableError(`the warm interpreter stopped answering: ${why}`));
      void this.close();
    }, ANSWER_CHECK_MS);
    const stop = () => clearInterval(timer);
    answered.then(stop, stop);
    return stop;
  }

  /** The zygote broke the protocol: logged, killed; its calls fail. */
  private breakOff(err: ZygoteProtocolError): void {
    if (this.dead) return;
    this.logger.warn('warm interpreter broke its protocol; it is stopped', { error: err.message });
    this.fail(err);
    void this.close();
  }

  private fail(err: Error): void {
    this.dead = true;
    this.releaseAhead();
    for (const run of this.pending.values()) {
      run.forked.reject(err);
      run.exit.resolve(KILLED);
    }
  }
}
