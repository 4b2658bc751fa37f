// The worker's side of sessions' networks: one network namespace per session, joined to the
// host by a veth pair whose host end is all the session can reach: the egress proxy and the
// DNS gate behind the worker's nftables table. Sessions never share the host's namespace.
//
// Addresses: the worker has a /16 of its own (10.<100 + its uid block>.0.0/16). Every host end
// of a veth carries the same gateway address (…0.1/32); each session's end its own /32, routed
// to its veth. Names: namespaces `codegen-<block>-<index>`, host ends `cg<block>n<index>`.

import { mkdir, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../logger.js';
import { runHostTool } from '../process/hostTools.js';
import { DnsGate, upstreamResolvers } from './dnsGate.js';
import { EgressProxy } from './egressProxy.js';
import { egressRuleset, egressTableName, INSTALLER_SET } from './egressRules.js';
import type { InstallerEndpoints } from './installerEndpoints.js';
import { cidrContains, ipv4Number, ipv4Text, parseCidr, type Cidr } from './ipv4.js';
import type { SessionNetworkPolicy } from './networkPolicy.js';
import { CONNTRACK_TABLE } from './originalDestination.js';
import { SessionEgress } from './sessionEgress.js';
import { access } from 'node:fs/promises';
import { pathExists } from '../../storage/pathExists.js';

/** A session's namespace, made ahead (spares) and attached to a session's policy when it is one. */
export interface SessionNamespace {
  index: number;
  /** /run/netns/<name>: what `nsenter --net=` joins. */
  path: string;
  name: string;
  address: string;
  /** Loopback alone (a session with no network): no veth pair, no way out. */
  loopbackOnly?: boolean;
}

export interface NetworkHostOptions {
  /** The worker's uid block number: what keeps two workers' names and addresses apart. */
  block: number;
  /** WORKER_DNS_SERVERS; empty: /etc/resolv.conf's. */
  dnsServers: readonly string[];
  /** Where the sessions' resolv.conf is written. */
  runDirectory: string;
  logger: Logger;
  onRefused: (sessionId: string, kind: 'connect' | 'dns') => void;
  /** pkg.install's fetching uid and where it fetches from (installerEndpoints.ts): all it may reach. */
  installer?: { uid: number; endpoints: InstallerEndpoints } | undefined;
}

const MAX_INDEX = 65_533;
const LOOPBACK = parseCidr('127.0.0.0/8')!;

export class NetworkHost {
  private readonly free: number[] = [];
  private nextIndex = 2;
  private readonly attached = new Map<string, SessionEgress>();

  private constructor(
    private readonly options: NetworkHostOptions,
    private readonly subnet: Cidr,
    private readonly prefix: string,
    private readonly proxy: EgressProxy,
    private readonly dns: DnsGate,
    /** The sessions' /etc/resolv.conf (host path). */
    readonly resolvConf: string,
  ) {}

  /**
   * Sets up the worker's table and servers, after removing what an earlier run of this worker
   * (same uid block) left. Throws, saying what is missing, where the host cannot give sessions
   * networks (not root, no nftables, no connection tracking table).
   */
  static async start(options: NetworkHostOptions): Promise<NetworkHost> {
    if (process.getuid?.() !== 0) throw new Error('it needs a worker running as root (network namespaces, veth pairs, nftables)');
    for (const tool of ['ip', 'nft']) {
      await runHostTool(tool, ['-V']).catch(() => {
        throw new Error(`${tool} is not installed (Debian packages iproute2 and nftables; \`make run\` installs them)`);
      });
    }
    await access(CONNTRACK_TABLE).catch(() => {
      throw new Error(`${CONNTRACK_TABLE} is missing: the kernel needs connection tracking (nf_conntrack, with its /proc table)`);
    });
    const octet = 100 + (options.block % 100);
    const subnet = parseCidr(`10.${octet}.0.0/16`)!;
    const prefix = `cg${options.block}n`;
    await clearLeftovers(options.block, prefix);
    // Blocks 100 apart share a /16: the second worker does not start (its leftovers, named by its whole block, are gone by now).
    const clash = [...hostAddresses()].find((address) => cidrContains(subnet, address));
    if (clash !== undefined)
      throw new Error(`the host already has the address ${ipv4Text(clash)} in 10.${octet}.0.0/16, which this worker would give its sessions`);
    const resolvConf = join(options.runDirectory, 'resolv.conf');
    await mkdir(options.runDirectory, { recursive: true });
    await writeFile(resolvConf, `nameserver ${ipv4Text(subnet.base + 1)}\noptions ndots:0 attempts:2 timeout:2\n`, { mode: 0o644 });
    const upstreams = await upstreamResolvers(options.dnsServers);
    let host: NetworkHost | undefined;
    const sessionAt = (address: string) => host?.attached.get(address);
    const table = egressTableName(prefix);
    const installer = options.installer && installerEgress(options.installer, table, options.logger);
    // A question from anywhere but a session's address is the installer's (its DNS is redirected to the gate).
    const askerAt = (address: string) => {
      const n = ipv4Number(address) ?? 0;
      return sessionAt(address) ?? (cidrContains(LOOPBACK, n) || hostAddresses().has(n) ? installer : undefined);
    };
    const proxy = await EgressProxy.start(sessionAt, options.logger);
    const dns = await DnsGate.start(askerAt, upstreams, options.logger).catch(async (err: unknown) => {
      await proxy.close();
      throw err;
    });
    host = new NetworkHost(options, subnet, prefix, proxy, dns, resolvConf);
    try {
      const installerRules = options.installer && { uid: options.installer.uid, addresses: options.installer.endpoints.addresses };
      await runHostTool('nft', ['-f', '-'], egressRuleset(prefix, { proxy: proxy.port, dns: dns.port }, installerRules));
    } catch (err) {
      await host.close();
      throw err;
    }
    return host;
  }

  /** One line for the start-up log. */
  describe(): string {
    return `a network namespace per session (veth, 10.${(this.subnet.base >>> 16) & 255}.0.0/16), egress through the worker's proxy and DNS gate (nftables table ${egressTableName(this.prefix)})`;
  }

  private get gateway(): string {
    return ipv4Text(this.subnet.base + 1);
  }

  /** A new namespace with its veth pair and addresses; nothing reaches out of it until attach(). */
  async prepare(): Promise<SessionNamespace> {
    const index = this.takeIndex();
    const name = `codegen-${this.options.block}-${index}`;
    const hostEnd = `${this.prefix}${index}`;
    const address = ipv4Text(this.subnet.base + index);
    const space = { index, name, path: `/run/netns/${name}`, address };
    try {
      await removeLeftovers(name, hostEnd);
      await runHostTool(
        'ip',
        ['-batch', '-'],
        [
          `netns add ${name}`,
          `link add ${hostEnd} type veth peer name eth0 netns ${name}`,
          `link set ${hostEnd} addrgenmode none`,
          `addr add ${this.gateway}/32 dev ${hostEnd}`,
          `link set ${hostEnd} up`,
          `route add ${address}/32 dev ${hostEnd}`,
          '',
        ].join('\n'),
      );
      await runHostTool(
        'ip',
        ['-n', name, '-batch', '-'],
        [
          'link set lo up',
          'link set eth0 addrgenmode none',
          `addr add ${address}/32 dev eth0`,
          'link set eth0 up',
          `route add ${this.gateway}/32 dev eth0 scope link`,
          `route add default via ${this.gateway} dev eth0`,
          '',
        ].join('\n'),
      );
      return space;
    } catch (err) {
      await this.release(space);
      throw err;
    }
  }

  /**
   * A namespace with loopback alone, for a session with no network: its processes share it (a
   * server one starts is reached on localhost by the next, and by port URLs), and nothing leaves it.
   */
  async prepareLoopback(): Promise<SessionNamespace> {
    const index = this.takeIndex();
    const name = `codegen-${this.options.block}-${index}`;
    const space = { index, name, path: `/run/netns/${name}`, address: ipv4Text(this.subnet.base + index), loopbackOnly: true };
    try {
      await removeLeftovers(name);
      await runHostTool('ip', ['netns', 'add', name]);
      await runHostTool('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      return space;
    } catch (err) {
      await this.release(space);
      throw err;
    }
  }

  /** Takes a prepared namespace's way out (its veth pair): loopback alone stays (prepareLoopback's). */
  async isolate(space: SessionNamespace): Promise<void> {
    space.loopbackOnly = true;
    this.attached.delete(space.address);
    await runHostTool('ip', ['link', 'del', `${this.prefix}${space.index}`]);
  }

  /** The session's policy takes effect on its namespace: its DNS questions and connections are its own. */
  attach(space: SessionNamespace, sessionId: string, policy: SessionNetworkPolicy): void {
    const egress = new SessionEgress(
      sessionId,
      policy,
      (address) => this.isHostAddress(address),
      (kind) => this.options.onRefused(sessionId, kind),
    );
    this.attached.set(space.address, egress);
  }

  /** Deletes the namespace (and so its veth pair) and drops its connections. */
  async release(space: SessionNamespace): Promise<void> {
    this.attached.delete(space.address);
    this.proxy.dropSession(space.address);
    await runHostTool('ip', ['netns', 'del', space.name]).catch(() => undefined);
    await runHostTool('ip', ['link', 'del', `${this.prefix}${space.index}`]).catch(() => undefined);
    this.free.push(space.index);
  }

  private isHostAddress(address: number): boolean {
    return cidrContains(this.subnet, address) || hostAddresses().has(address);
  }

  /**
   * A session's index (so its address): one never used first, then the longest free. What the
   * kernel tracks per address outlives a session a while (its flows, counted against the
   * per-session limit of egressRules.ts), and must not be the next session's.
   */
  private takeIndex(): number {
    while (this.nextIndex <= MAX_INDEX) {
      const index = this.nextIndex++;
      if ((index & 255) !== 0 && (index & 255) !== 255) return index;
    }
    const reused = this.free.shift();
    if (reused !== undefined) return reused;
    throw new Error('no free session network: every address of the worker’s /16 is in use');
  }

  /** Removes the table, the servers and every namespace this worker made. */
  async close(): Promise<void> {
    await runHostTool('nft', ['delete', 'table', 'inet', egressTableName(this.prefix)]).catch(() => undefined);
    await Promise.all([this.proxy.close(), this.dns.close()]);
    await clearLeftovers(this.options.block, this.prefix);
  }
}

/**
 * The installer's side of the DNS gate: it may ask only for its endpoints' names, and each
 * address answered is let through the firewall (at that name's ports) before the answer goes back.
 */
function installerEgress(installer: { uid: number; endpoints: InstallerEndpoints }, table: string, logger: Logger): SessionEgress {
  const names = installer.endpoints.names;
  const allow = names.map((n) => `${n.name}:${n.port}`);
  return new SessionEgress(
    'pkg.install',
    { mode: 'allow_list', allow },
    () => false,
    () => logger.debug('pkg.install asked DNS for a name outside its sources'),
    async (address, name) => {
      const ports = names.filter((n) => n.name === name.toLowerCase().replace(/\.$/, '')).map((n) => n.port);
      if (ports.length === 0) return;
      const elements = ports.map((port) => `${address} . ${port} timeout 1h`).join(', ');
      await runHostTool('nft', ['add', 'element', 'inet', table, INSTALLER_SET, `{ ${elements} }`]).catch((err: Error) =>
        logger.warn('could not let pkg.install reach an address of its sources', { error: err.message }),
      );
    },
  );
}

/**
 * The host's own IPv4 addresses, as numbers: read again at most once a second, as every proxied
 * connection asks and the list grows with the sessions (each host end of a veth is an interface).
 */
let known: { at: number; addresses: Set<number> } | undefined;
function hostAddresses(): Set<number> {
  if (known && Date.now() - known.at < 1000) return known.addresses;
  const addresses = Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((i) => ipv4Number(i.address))
    .filter((n): n is number => n !== undefined);
  known = { at: Date.now(), addresses: new Set(addresses) };
  return known.addresses;
}

/** Namespaces and host ends of an earlier run with this uid block (its worker is gone: the block is ours). */
async function clearLeftovers(block: number, prefix: string): Promise<void> {
  const spaces = (await runHostTool('ip', ['netns', 'list']).catch(() => ''))
    .split('\n')
    .map((line) => /^[^ ]+/.exec(line)?.[0])
    .filter((name): name is string => name !== undefined && name.startsWith(`codegen-${block}-`));
  const links = (await runHostTool('ip', ['-o', 'link', 'show']).catch(() => ''))
    .split('\n')
    .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined && name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)));
  const batch = [...spaces.map((name) => `netns del ${name}`), ...links.map((name) => `link del ${name}`)];
  if (batch.length > 0) await runHostTool('ip', ['-force', '-batch', '-'], batch.join('\n') + '\n').catch(() => undefined);
}

/**
 * A namespace and veth end of these names an earlier run left (killed), deleted; looked for first,
 * as there almost never are any: an `ip` process each cost a session's network milliseconds.
 */
async function removeLeftovers(namespace: string, hostEnd?: string): Promise<void> {
  if (hostEnd !== undefined && (await pathExists(`/sys/class/net/${hostEnd}`))) await runHostTool('ip', ['link', 'del', hostEnd]).catch(() => undefined);
  if (await pathExists(`/run/netns/${namespace}`)) await runHostTool('ip', ['netns', 'del', namespace]).catch(() => undefined);
}
