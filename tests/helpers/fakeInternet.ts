// A fake internet in network namespaces, for tests of the worker's network isolation (issue 22):
// nothing a test does through it, even against a broken worker, can leave the machine.
//
// Two namespaces per fixture. The "world" holds every served address (on its loopback, as /32s),
// a DNS server and HTTP/TLS/raw-TCP servers (fakeInternetServer.ts, one process), and answers any
// other address itself with a reset (a local route for 0.0.0.0/0: nothing listens there), so a
// connection to an unserved address fails at once instead of timing out. Its forwarding stays off.
// The "worker" namespace has its loopback and one veth to the world, with the default route
// through it: no link to the host's namespace, so neither the host's loopback nor anything beyond
// the machine is reachable from it.
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { makeCa } from './certificates.js';
import type { DnsQuery, Hit, ServerConfig } from './fakeInternetServer.js';

export type { DnsQuery, Hit } from './fakeInternetServer.js';

const run = promisify(execFile);
const SERVER = new URL('./fakeInternetServer.js', import.meta.url).pathname;
const PROBE = new URL('./fakeInternetProbe.js', import.meta.url).pathname;
const RELAY = new URL('./fakeInternetRelay.js', import.meta.url).pathname;
/** Every namespace a fixture makes is named `${PREFIX}<pid>-<n>-world|worker`, the pid its maker's. */
const PREFIX = 'cgfi-';
const DEFAULT_PORTS = [80, 443, 8000, 8443];
/** The fake internet's resolver unless the options name one (TEST-NET-2: never a real host). */
const DEFAULT_DNS = '198.51.100.53';

export interface FakeInternetOptions {
  /** name -> IPv4: the DNS server answers A records for these (case-insensitive); servers run on each IPv4. */
  names: Record<string, string>;
  /** More IPv4 addresses served the same way, with no name (e.g. 169.254.169.254, 10.99.0.5). */
  extraAddresses?: string[];
  /** Ports served on every address: 80, 443, 8000 and 8443 unless given. */
  ports?: number[];
  /** The DNS server's address: 198.51.100.53 unless given. */
  dnsServer?: string;
}

export interface FakeInternet {
  /** The namespace (in /run/netns: `ip netns exec NAME`, `nsenter --net=/run/netns/NAME`) whose only way out is the fake internet. */
  workerNamespace: string;
  /** The fake internet's own namespace (servers, DNS): for debugging; tests need not enter it. */
  worldNamespace: string;
  /** The worker namespace's address on its link to the fake internet (its source address for everything outside). */
  workerAddress: string;
  /** The fake internet's end of that link: the worker namespace's default gateway. */
  gatewayAddress: string;
  /** The DNS server (UDP and TCP 53): the worker's upstream resolver; also in resolv.conf for `ip netns exec` into the worker namespace. */
  dnsServer: string;
  /** name (lower case) -> IPv4 the DNS server answers (A only; AAAA and other types: no data; unknown names: NXDOMAIN). */
  addresses: Record<string, string>;
  /** Every address served (named or not), each on every port in `ports`. */
  served: string[];
  ports: number[];
  /** PEM of the CA that signed the TLS servers' certificate (it covers every name and served address). */
  caPem: string;
  /** The same PEM as a file, for SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, curl --cacert. */
  caFile: string;
  /** Every connection any server accepted, in order of acceptance. */
  hits(): Promise<Hit[]>;
  /** Every DNS question the server was asked, in order. */
  dnsQueries(): Promise<DnsQuery[]>;
  /** Spawns a process inside the worker namespace (with `ip netns exec`); close() kills it if still running. */
  spawnInWorkerNamespace(argv: string[], options?: SpawnOptions): ChildProcess;
  /** Tries one connection or lookup from inside the worker namespace and says what came of it. */
  probe(request: ProbeRequest): Promise<ProbeResult>;
  /**
   * A unix socket (returned as `unix:/path`, the form gRPC clients take) whose connections are
   * relayed to `host:port` inside the worker namespace: how a test in the host's namespace reaches
   * a worker listening there. One way only: nothing in the worker namespace reaches the host by it.
   */
  forwardIntoWorkerNamespace(port: number, host?: string): Promise<string>;
  /** Removes namespaces, processes and files the fixture made; idempotent. Also done, best-effort, at exit and on SIGINT/SIGTERM. */
  close(): Promise<void>;
}

export type ProbeRequest =
  /** A lookup of `name` (A records unless `type` says AAAA) against `server` (the fake internet's DNS unless given), over UDP unless `tcp`. */
  | { kind: 'resolve'; name: string; type?: 'A' | 'AAAA'; server?: string; tcp?: boolean }
  /** An HTTP(S) GET of `url`, connecting to `address` instead of resolving its host when given; https trusts the fixture's CA unless `ca` says otherwise. */
  | { kind: 'http'; url: string; address?: string; ca?: string }
  /** A TLS handshake with `servername` as SNI (none when omitted), trusting the fixture's CA unless `ca` says otherwise. */
  | { kind: 'tls'; address: string; port: number; servername?: string; ca?: string }
  /** A TCP connection; `read` waits for the server's first line. */
  | { kind: 'tcp'; address: string; port: number; read?: boolean };

export interface ProbeResult {
  ok: boolean;
  /** resolve: the addresses; http: the status; tcp with read: the line read. */
  addresses?: string[];
  status?: number;
  /** http: the parsed JSON body (served_by, port, name, protocol, path, sni, host). */
  body?: Record<string, unknown>;
  line?: string;
  /** tls: the certificate's subject alternative names. */
  altNames?: string;
  /** The error's code (ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ...) or message when !ok. */
  error?: string;
  ms: number;
}

const live = new Set<{ closeSync(): void }>();
let counter = 0;

/** Makes a fake internet serving `options.names` and `options.extraAddresses`; close() it after. */
export async function makeFakeInternet(options: FakeInternetOptions): Promise<FakeInternet> {
  removeStale();
  const n = counter++;
  const base = `${PREFIX}${process.pid}-${n}`;
  const world = `${base}-world`;
  const worker = `${base}-worker`;
  const ports = options.ports ?? DEFAULT_PORTS;
  const dnsServer = options.dnsServer ?? DEFAULT_DNS;
  const addresses: Record<string, string> = {};
  for (const [name, address] of Object.entries(options.names)) addresses[name.toLowerCase().replace(/\.$/, '')] = address;
  const served = [...new Set([...Object.values(addresses), ...(options.extraAddresses ?? [])])];
  for (const address of [...served, dnsServer]) if (!isIPv4(address)) throw new Error(`fake internet: ${address} is not an IPv4 address`);
  const { gateway, workerAddress } = linkAddresses(process.pid * 64 + n, new Set([...served, dnsServer]));

  const ca = makeCa(`fake-internet-${process.pid}-${n}`); // a directory named for its owner: see removeStale
  const processes = new Set<ChildProcess>();
  let server: ChildProcess | undefined;
  const closeSync = () => {
    for (const child of processes) child.kill('SIGKILL');
    server?.kill('SIGKILL');
    removeNamespaces([world, worker]);
    ca.remove();
    live.delete(fixture);
  };
  const fixture = { closeSync };
  live.add(fixture);
  installExitHandlers();
  try {
    const { certFile, keyFile } = ca.issue('servers', { hosts: [...Object.keys(addresses), ...served, dnsServer] });
    await makeNamespaces(world, worker, { gateway, workerAddress, served: [...served, dnsServer] });
    mkdirSync(`/etc/netns/${worker}`, { recursive: true });
    writeFileSync(`/etc/netns/${worker}/resolv.conf`, `nameserver ${dnsServer}\noptions timeout:1 attempts:1\n`);
    const config: ServerConfig = { addresses: served, ports, dnsServer, names: addresses, certFile, keyFile };
    server = spawn('ip', ['netns', 'exec', world, process.execPath, SERVER, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const control = await serverControl(server);

    const spawnInWorkerNamespace = (argv: string[], spawnOptions: SpawnOptions = {}): ChildProcess => {
      // As `ip netns exec` (the namespace's network, its /etc/netns files over /etc's, in a mount
      // namespace of its own), but keeping the host's /sys: `ip netns exec` mounts a sysfs of its
      // own there, without the cgroup hierarchies, and the worker would have no limits to set.
      const child = spawn(
        'nsenter',
        [
          `--net=/run/netns/${worker}`,
          '--',
          'unshare',
          '-m',
          '--',
          'sh',
          '-c',
          `mount --bind /etc/netns/${worker}/resolv.conf /etc/resolv.conf && exec "$@"`,
          'sh',
          ...argv,
        ],
        spawnOptions,
      );
      processes.add(child);
      child.once('exit', () => processes.delete(child));
      return child;
    };
    let closing: Promise<void> | undefined;
    return {
      workerNamespace: worker,
      worldNamespace: world,
      workerAddress,
      gatewayAddress: gateway,
      dnsServer,
      addresses,
      served,
      ports,
      caPem: ca.ca.toString(),
      caFile: ca.caFile,
      hits: async () => (await control.ask()).hits,
      dnsQueries: async () => (await control.ask()).queries,
      spawnInWorkerNamespace,
      probe: (request) => probe(spawnInWorkerNamespace, { ca: ca.caFile, server: dnsServer, ...request }),
      forwardIntoWorkerNamespace: (port, host = '127.0.0.1') => forward(spawnInWorkerNamespace, `${ca.dir}/relay-${host}-${port}.sock`, host, port),
      close: () =>
        (closing ??= (async () => {
          const exited = [...processes, server!].map((child) => exitOf(child));
          for (const child of [...processes, server!]) child.kill('SIGTERM');
          await Promise.race([Promise.all(exited), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
          closeSync();
        })()),
    };
  } catch (error) {
    closeSync();
    throw error;
  }
}

/** A /30 for the link, derived from `seed` in 198.18.0.0/15 (RFC 2544: used by nothing real) and clear of the served addresses. */
function linkAddresses(seed: number, taken: Set<string>): { gateway: string; workerAddress: string } {
  for (let attempt = 0; ; attempt++) {
    const block = 198 * 2 ** 24 + 18 * 2 ** 16 + (((seed + attempt) * 4) % 2 ** 17);
    const gateway = ipv4(block + 1);
    const workerAddress = ipv4(block + 2);
    if (!taken.has(gateway) && !taken.has(workerAddress)) return { gateway, workerAddress };
  }
}

function ipv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

async function makeNamespaces(world: string, worker: string, link: { gateway: string; workerAddress: string; served: string[] }): Promise<void> {
  await run('ip', ['netns', 'add', world]);
  await run('ip', ['netns', 'add', worker]);
  const batch = [
    `link add to-worker type veth peer name internet0 netns ${worker}`,
    'link set lo up',
    'link set to-worker up',
    `addr add ${link.gateway}/30 dev to-worker`,
    ...link.served.map((address) => `addr add ${address}/32 dev lo`),
    // Every other address is local too, with nothing listening: a reset (TCP) or port
    // unreachable (UDP) at once. In main, not local: the link's /30 still routes to the worker.
    'route add local 0.0.0.0/0 dev lo table main',
  ];
  await ipBatch(world, batch);
  await ipBatch(worker, [
    'link set lo up',
    `addr add ${link.workerAddress}/30 dev internet0`,
    'link set internet0 up',
    `route add default via ${link.gateway}`,
  ]);
  await run('ip', ['netns', 'exec', world, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
}

async function ipBatch(namespace: string, commands: string[]): Promise<void> {
  const child = run('ip', ['-n', namespace, '-batch', '-']);
  child.child.stdin!.end(commands.join('\n') + '\n');
  await child;
}

interface Control {
  ask(): Promise<{ hits: Hit[]; queries: DnsQuery[] }>;
}

/** Waits for the server's ready line; then asks it for its records over its stdin/stdout. */
async function serverControl(server: ChildProcess): Promise<Control> {
  let stderr = '';
  server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const waiting = new Map<number, (reply: { hits: Hit[]; queries: DnsQuery[] }) => void>();
  let ready: () => void;
  const started = new Promise<void>((resolve) => (ready = resolve));
  createInterface({ input: server.stdout! }).on('line', (line) => {
    const message = JSON.parse(line) as { ready?: boolean; id?: number; hits: Hit[]; queries: DnsQuery[] };
    if (message.ready) ready();
    else if (message.id !== undefined) waiting.get(message.id)?.(message);
  });
  const gone = exitOf(server).then((code) => {
    throw new Error(`fake internet: its server exited (${code}): ${stderr}`);
  });
  gone.catch(() => undefined);
  await Promise.race([started, gone]);
  let next = 0;
  return {
    ask: () => {
      const id = next++;
      const reply = new Promise<{ hits: Hit[]; queries: DnsQuery[] }>((resolve) => waiting.set(id, resolve));
      server.stdin!.write(`${JSON.stringify({ id, op: 'hits' })}\n`);
      return Promise.race([reply, gone]).finally(() => waiting.delete(id));
    },
  };
}

function exitOf(child: ChildProcess): Promise<number | string | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
}

async function probe(spawnIn: FakeInternet['spawnInWorkerNamespace'], request: ProbeRequest & { ca: string; server: string }): Promise<ProbeResult> {
  const child = spawnIn([process.execPath, PROBE, JSON.stringify(request)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await exitOf(child);
  if (code !== 0) throw new Error(`fake internet probe exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as ProbeResult;
}

async function forward(spawnIn: FakeInternet['spawnInWorkerNamespace'], path: string, host: string, port: number): Promise<string> {
  const relay = spawnIn([process.execPath, RELAY, path, host, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    relay.stdout!.once('data', () => resolve());
    relay.once('exit', (code) => reject(new Error(`fake internet relay exited (${code})`)));
  });
  return `unix:${path}`;
}

/** What a fixture whose process is gone (a crash, a kill -9) left: its namespaces, what runs in them, its CA's directory. */
function removeStale(): void {
  const deadOwner = (name: string, pattern: RegExp) => {
    const pid = Number(pattern.exec(name)?.[1]);
    return pid > 0 && pid !== process.pid && !alive(pid);
  };
  if (existsSync('/run/netns'))
    removeNamespaces(readdirSync('/run/netns').filter((name) => deadOwner(name, new RegExp(`^${PREFIX}(\\d+)-\\d+-(world|worker)$`))));
  for (const name of readdirSync(tmpdir()).filter((entry) => deadOwner(entry, /^codegen-ca-fake-internet-(\d+)-\d+-/)))
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills whatever runs in each namespace, then deletes it: synchronous, so exit handlers can. */
function removeNamespaces(names: string[]): void {
  for (const name of names) {
    const pids = tryExec(['netns', 'pids', name]).split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    if (existsSync(`/run/netns/${name}`)) tryExec(['netns', 'delete', name]);
    rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  }
}

function tryExec(args: string[]): string {
  try {
    return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  } catch {
    return '';
  }
}

let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const closeAll = () => {
    for (const fixture of [...live]) fixture.closeSync();
  };
  process.once('exit', closeAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      closeAll();
      process.kill(process.pid, signal); // the default action, now that the handler is gone
    });
}
