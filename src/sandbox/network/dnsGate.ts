// The sessions' DNS resolver: the only one their namespaces can reach. It answers a question
// only when the session's policy allows the name, forwards it to the worker's own resolvers,
// and admits the addresses of the answer to that session's allowed set. IPv4 only: AAAA
// questions are answered with no addresses (sessions have no IPv6).

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Logger } from '../../logger.js';
import type { SessionEgress } from './sessionEgress.js';
import { UpstreamSockets } from './upstreamSockets.js';

const NXDOMAIN = 3;
const SERVFAIL = 2;
const NOTIMP = 4;
/** The UDP payload the gate's own questions offer upstream (EDNS0: RFC 6891; 1232 avoids fragments). */
const EDNS_PAYLOAD = 1232;
const UPSTREAM_TIMEOUT_MS = 2_500;
/** Questions one session may have waiting on the upstream at once; past it: SERVFAIL. */
const MAX_PENDING_PER_SESSION = 64;

/** The worker's own resolvers: WORKER_DNS_SERVERS, else /etc/resolv.conf's nameservers. */
export async function upstreamResolvers(configured: readonly string[]): Promise<{ address: string; port: number }[]> {
  const entries = configured.length > 0 ? configured : await resolvConfServers();
  return entries.map((entry) => {
    const text = entry.trim();
    const [, bracketed, bracketedPort] = /^\[(.+)\](?::(\d+))?$/.exec(text) ?? [];
    if (bracketed !== undefined) return { address: bracketed, port: Number(bracketedPort ?? 53) };
    const [, address, port] = /^([\d.]+):(\d+)$/.exec(text) ?? [];
    return address !== undefined && port !== undefined ? { address, port: Number(port) } : { address: text, port: 53 };
  });
}

async function resolvConfServers(): Promise<string[]> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const servers = [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!); // (\S+) always takes part
  return servers.length > 0 ? servers : ['127.0.0.1'];
}

/**
 * A UDP socket and a TCP server on the same free port (the rules redirect both protocols to
 * one): the port the system gives UDP may be taken for TCP, so another is tried; what failed
 * is closed, so nothing is left open (a failed start must not keep the process alive).
 */
async function listenOnOnePort(): Promise<{ udp: UdpSocket; tcp: Server }> {
  for (let attempt = 1; ; attempt++) {
    const udp = createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, '0.0.0.0', () => resolve());
      });
    } catch (err) {
      udp.close();
      throw err;
    }
    const tcp = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(udp.address().port, '0.0.0.0', () => resolve());
      });
      return { udp, tcp };
    } catch (err) {
      udp.close();
      tcp.close();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
    }
  }
}

export class DnsGate {
  private readonly pending = new Map<string, number>();
  private readonly upstreamSockets = new UpstreamSockets();

  private constructor(
    private readonly udp: UdpSocket,
    private readonly tcp: Server,
    private readonly sessionAt: (address: string) => SessionEgress | undefined,
    private readonly upstreams: readonly { address: string; port: number }[],
    private readonly logger: Logger,
  ) {}

  static async start(
    sessionAt: (address: string) => SessionEgress | undefined,
    upstreams: readonly { address: string; port: number }[],
    logger: Logger,
  ): Promise<DnsGate> {
    const { udp, tcp } = await listenOnOnePort();
    const gate = new DnsGate(udp, tcp, sessionAt, upstreams, logger);
    udp.on('message', (message, from) => void gate.answer(message, from.address).then((reply) => reply && udp.send(reply, from.port, from.address)));
    tcp.on('connection', (socket) => gate.serveTcp(socket));
    return gate;
  }

  /** The port both listen on (UDP and TCP). */
  get port(): number {
    return this.udp.address().port;
  }

  private serveTcp(socket: Socket): void {
    let buffered = Buffer.alloc(0);
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > 65_537) {
        socket.destroy();
        return;
      }
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        void this.answer(message, socket.remoteAddress ?? '').then((reply) => {
          if (!reply || socket.destroyed) return;
          const length = Buffer.alloc(2);
          length.writeUInt16BE(reply.length);
          // A client that asks and never reads is not answered into the worker's memory: it waits.
          if (!socket.write(Buffer.concat([length, reply]))) {
            socket.pause();
            socket.once('drain', () => socket.resume());
          }
        });
      }
    });
  }

  /** The reply to one query from `from` (undefined: none, for what is not a query of a session). */
  async answer(message: Buffer, from: string): Promise<Buffer | undefined> {
    const session = this.sessionAt(from);
    if (!session) return undefined;
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return undefined;
    }
    const question = query.questions?.[0];
    if (query.type !== 'query' || !question || (query.questions?.length ?? 0) !== 1) return undefined;
    const reply = (rcode: number, answers: dnsPacket.Answer[] = []) =>
      dnsPacket.encode({
        type: 'response',
        id: query.id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
        questions: [question],
        answers,
      });
    // Only questions: an UPDATE or NOTIFY is the upstream's to refuse, and it is never asked.
    if ((query as { opcode?: string }).opcode !== 'QUERY') return reply(NOTIMP);
    if (!session.mayResolve(question.name)) return reply(NXDOMAIN);
    if (question.type === 'AAAA') return reply(0);
    const waiting = this.pending.get(session.sessionId) ?? 0;
    if (waiting >= MAX_PENDING_PER_SESSION) return reply(SERVFAIL);
    this.pending.set(session.sessionId, waiting + 1);
    try {
      // The gate's own question, never the session's bytes (their other sections, flags, options).
      const asked: dnsPacket.Packet = { type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [question] };
      const upstream = await this.ask(
        dnsPacket.encode({
          ...asked,
          additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
        }),
        dnsPacket.encode(asked).length - 12,
      );
      if (!upstream) return reply(SERVFAIL);
      const answer = dnsPacket.decode(upstream);
      const answers = (answer.answers ?? []).filter((a) => a.type !== 'AAAA');
      for (const a of answers) if (a.type === 'A') await session.admit(question.name, a.data);
      return dnsPacket.encode({ ...answer, id: query.id, answers, additionals: [], authorities: answer.authorities ?? [] });
    } catch (err) {
      this.logger.debug('dns: upstream answer unusable', { error: (err as Error).message });
      return reply(SERVFAIL);
    } finally {
      const left = (this.pending.get(session.sessionId) ?? 1) - 1;
      if (left > 0) this.pending.set(session.sessionId, left);
      else this.pending.delete(session.sessionId);
    }
  }

  /** The first upstream's answer to `message` (each tried in turn; upstreamSockets.ts). */
  private async ask(message: Buffer, questionBytes: number): Promise<Buffer | undefined> {
    for (const upstream of this.upstreams) {
      const answer = await this.upstreamSockets.ask(message, questionBytes, upstream, UPSTREAM_TIMEOUT_MS);
      if (answer) return answer;
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.upstreamSockets.close();
    this.udp.close();
    await new Promise<void>((resolve) => this.tcp.close(() => resolve()));
  }
}
