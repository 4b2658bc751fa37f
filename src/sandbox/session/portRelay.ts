import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Owner } from '../../storage/owner.js';
import type { Cgroup } from '../confine/cgroups.js';
import { ROOT_ENV } from '../process/hostTools.js';
import { startProcess } from '../process/runProcess.js';

/** portRelay.py's program, read once from the checkout (the compiled module runs from dist/src/sandbox/session/). */
const PORT_RELAY_SOURCE = readFileSync(new URL('../../../../src/sandbox/session/portRelay.py', import.meta.url), 'utf8');

const DIRECTORY_PREFIX = 'codegen-ports-';

/** Removes the socket directories of relays whose worker process is gone (killed: its relays died with it). */
export async function sweepRelayDirectories(): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [])) {
    const pid = new RegExp(`^${DIRECTORY_PREFIX}(\\d+)-`).exec(name)?.[1];
    if (
      pid === undefined ||
      Number(pid) === process.pid ||
      (await readdir(`/proc/${pid}`).then(
        () => true,
        () => false,
      ))
    )
      continue;
    await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** How long the relay may take to start listening. */
const READY_MS = 10_000;

export interface PortRelayTools {
  nsenter: string;
  setpriv: string;
  python: string;
}

/**
 * A session's port relay (portRelay.py): started on the first connection a port URL needs, in
 * the session's network namespace, as its uid, in its cgroup (its memory and processes count
 * as the session's), and kept until the session ends; started again if the session's code
 * killed it (it runs as the session's uid).
 */
export class PortRelay {
  private started: Promise<{ child: ChildProcess; socket: string; dir: string }> | undefined;

  constructor(
    private readonly tools: PortRelayTools,
    private readonly namespace: string,
    private readonly owner: Owner,
    private readonly cgroup: Cgroup | undefined,
  ) {}

  /** A connection to `port` on the session's loopback (closed at once when nothing listens there). */
  async connect(port: number): Promise<Duplex> {
    for (let attempt = 0; ; attempt++) {
      const relay = await this.relay();
      try {
        return await new Promise<Duplex>((resolve, reject) => {
          const socket = connect(relay.socket);
          // Always heard: the relay may close it at once (at its cap), so the write below can fail
          // before whoever uses the socket listens; they see the close, and their own write's error.
          socket.on('error', () => undefined);
          socket.once('error', reject);
          socket.once('connect', () => {
            socket.off('error', reject);
            socket.write(`${port}\n`);
            resolve(socket);
          });
        });
      } catch (err) {
        // Gone (its uid's code may kill it): started again, once.
        this.stopRelay();
        if (attempt > 0) throw err;
      }
    }
  }

  async dispose(): Promise<void> {
    const started = this.started;
    this.stopRelay();
    const relay = await started?.catch(() => undefined);
    if (relay) await rm(relay.dir, { recursive: true, force: true });
  }

  private relay(): Promise<{ child: ChildProcess; socket: string; dir: string }> {
    this.started ??= this.start();
    const started = this.started;
    started.catch(() => {
      if (this.started === started) this.started = undefined;
    });
    return started;
  }

  private stopRelay(): void {
    const started = this.started;
    this.started = undefined;
    void started?.then(
      ({ child }) => {
        try {
          if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone already
        }
      },
      () => undefined,
    );
  }

  /** nsenter's arguments: the session's namespace, then its uid without privileges, then the relay on `socket`. */
  private arguments(socket: string): string[] {
    const { setpriv, python } = this.tools;
    const { uid, gid } = this.owner;
    return [
      `--net=${this.namespace}`,
      '--',
      setpriv,
      `--reuid=${uid}`,
      `--regid=${gid}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
      // It ends with the worker: a relay outliving it would hold the session's namespace and a socket.
      '--pdeathsig',
      'KILL',
      '--',
      python,
      '-I',
      '-S',
      '-u',
      '-c',
      PORT_RELAY_SOURCE,
      socket,
    ];
  }

  private async start(): Promise<{ child: ChildProcess; socket: string; dir: string }> {
    // A directory of the session's uid for the socket (the session's own are not its uid's to
    // reach), named for this worker process: what a killed worker left is swept at the next start.
    const dir = await mkdtemp(join(tmpdir(), `${DIRECTORY_PREFIX}${process.pid}-`));
    await chown(dir, this.owner.uid, this.owner.gid);
    const socket = join(dir, 'relay.sock');
    const child = startProcess({ executable: this.tools.nsenter, args: this.arguments(socket), cwd: '/', env: { ...ROOT_ENV } });
    child.stderr?.resume();
    child.stdin?.end();
    try {
      if (child.pid !== undefined) await this.cgroup?.addProcess(child.pid);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the port relay did not start')), READY_MS);
        child.stdout?.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
        child.once('exit', () => {
          clearTimeout(timer);
          reject(new Error('the port relay exited'));
        });
      });
    } catch (err) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    child.stdout?.resume();
    child.once('exit', () => {
      if (this.started)
        void this.started.then(
          (r) => r.child === child && (this.started = undefined),
          () => undefined,
        );
    });
    return { child, socket, dir };
  }
}
