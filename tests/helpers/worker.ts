import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountsBelow, unmountDiskImage } from '../../src/sandbox/confine/diskImage.js';
import { createWorkerClient, type WorkerClient, type WorkerClientOptions } from '../../src/client/index.js';
import { processesMarked } from './tasks.js';
import type { FakeInternet } from './fakeInternet.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

export interface RunningWorker {
  /** Where the test's client connects: `127.0.0.1:port`, or a relay's `unix:/path` for a worker in a namespace. */
  address: string;
  /** The port the worker listens on (in its own namespace). */
  grpcPort: number;
  /** The HTTP endpoint's port (artifacts, health, metrics). */
  httpPort: number;
  dataDir: string;
  process: ChildProcess;
  sessions: WorkerClient['sessions'];
  tasks: WorkerClient['tasks'];
  artifacts: WorkerClient['artifacts'];
  /** Every log line the worker printed so far, parsed. */
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  args?: string[];
  /** Reuse this data directory (kept at stop) instead of a fresh one (removed at stop). */
  dataDir?: string;
  /** How the test's client reaches the worker (a token, TLS). */
  client?: Pick<WorkerClientOptions, 'token' | 'credentials'>;
  /** Run the worker in this network namespace (a fake internet's: tests/helpers/fakeInternet.ts), reached through a relay. */
  namespace?: Pick<FakeInternet, 'spawnInWorkerNamespace' | 'forwardIntoWorkerNamespace'>;
}

/**
 * Removes a data directory: what a worker killed left mounted below it (the package caches',
 * sessions' disks) is unmounted first, so a test failing mid-restart neither leaks mounts nor has
 * its own error hidden by the removal's EBUSY.
 */
export async function removeDataDir(dataDir: string): Promise<void> {
  for (const point of (await mountsBelow(dataDir)).reverse()) await unmountDiskImage(point);
  await rm(dataDir, { recursive: true, force: true });
}

/** Starts a real worker process on a free loopback port with its own data directory. */
export async function startWorker(options: StartOptions = {}): Promise<RunningWorker> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'codegen-worker-test-')));
  // Python only unless a test names its languages: node's and go's start-up self-checks (a go
  // build) would cost every test worker a second; `WORKER_LANGUAGES: undefined` unsets it.
  // Test workers run one after another (and the bench's 200 sessions at once), each with spares
  // of 10 GB disks: this machine's free space could not reserve them all. The disk-fill test sets 1.
  const env: Record<string, string | undefined> = {
    ...process.env,
    WORKER_LOG_LEVEL: 'debug',
    WORKER_LANGUAGES: 'python',
    WORKER_DISK_OVERCOMMIT: '1000',
    // Two spares, not the production eight: each is a disk image, an environment, a cgroup and a
    // namespace made at start and after every create, and the suite starts a hundred workers on
    // two cores (make test spent most of its CPU on spares no test took).
    WORKER_SPARE_SESSIONS: '2',
    ...options.env,
  };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  const argv = [process.execPath, MAIN, '--grpc-addr', '127.0.0.1:0', '--data-dir', dataDir, '--http-addr', '127.0.0.1:0', ...(options.args ?? [])];
  const spawnOptions = { env, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
  const child = (
    options.namespace ? options.namespace.spawnInWorkerNamespace(argv, spawnOptions) : spawn(process.execPath, argv.slice(1), spawnOptions)
  ) as ChildProcessByStdio<null, Readable, Readable>;
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  let httpPort = 0;
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`worker did not start in 20 s: ${stderr}`)), 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before listening: ${stderr}`));
    });
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.message === 'worker listening') {
            clearTimeout(timer);
            httpPort = entry.http_port as number;
            resolve(entry.port as number);
          }
        } catch {
          // not a log line
        }
      }
    });
  });
  // unix:///path: nice-grpc hands an address of a protocol it does not know to grpc-js as it is.
  const address = options.namespace ? (await options.namespace.forwardIntoWorkerNamespace(port)).replace(/^unix:/, 'unix://') : `127.0.0.1:${port}`;
  // The project's own typed client (src/client), as coordinators use it.
  const client = createWorkerClient(address, { maxMessageBytes: 256 * 1024 * 1024, ...options.client });
  return {
    address,
    grpcPort: port,
    httpPort,
    dataDir,
    process: child,
    sessions: client.sessions,
    tasks: client.tasks,
    artifacts: client.artifacts,
    logs,
    async stop() {
      client.close();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      if (!options.dataDir) await removeDataDir(dataDir);
    },
  };
}

/**
 * Stops a worker: SIGTERM, then SIGKILL if it is still there after `graceMs`; then the usual
 * cleanup, and any process still carrying `sweep` (a session env mark: name and value) is killed.
 */
export async function stopHard(w: RunningWorker | undefined, graceMs = 5_000, sweep?: [string, string]): Promise<void> {
  if (!w) return;
  const child = w.process;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  await w.stop();
  for (const pid of sweep ? processesMarked(...sweep) : []) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
