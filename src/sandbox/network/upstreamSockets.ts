// The sockets the DNS gate asks its upstream resolvers from. A fresh port per question made each
// question a flow in the host's connection tracking table for 30 s: sessions asking as fast as
// their limit lets them (500 a second each) filled the host's table, which every connection on
// the host (the proxy's own lookups among them) needs. A fixed set of sockets holds a fixed set
// of flows. What a forged answer must guess instead: which of the sockets (each on a port of
// the kernel's choosing), the gate's own 16-bit id, and the question, from the upstream's address.

import { randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

/** Sockets per address family. */
export const UPSTREAM_SOCKETS = 32;

export interface Upstream {
  address: string;
  port: number;
}

interface Waiting {
  upstream: Upstream;
  /** The question section the answer must carry, byte for byte. */
  question: Buffer;
  done: (answer: Buffer | undefined) => void;
}

interface PooledSocket {
  socket: UdpSocket;
  /** Questions waiting on this socket, by the gate's id. */
  waiting: Map<number, Waiting>;
}

const HEADER_BYTES = 12;

const spelled = new Map<string, string>();
/**
 * An address as the kernel reports a datagram's sender (IPv6 lower case, zeros compressed):
 * an upstream configured as [0:0:0:0:0:0:0:1] answers from ::1. Found by an attack (a helper
 * session): compared as written, every answer of such an upstream was dropped as forged.
 */
function canonical(address: string): string {
  let found = spelled.get(address);
  if (found === undefined) {
    found = address;
    if (isIPv6(address) && !address.includes('%')) {
      try {
        found = new URL(`http://[${address}]/`).hostname.slice(1, -1);
      } catch {
        // kept as written
      }
    }
    if (spelled.size > 64) spelled.clear();
    spelled.set(address, found);
  }
  return found;
}

export class UpstreamSockets {
  private readonly pools = new Map<'udp4' | 'udp6', (PooledSocket | undefined)[]>();

  /**
   * Sends `query` (a DNS message whose id this replaces; `questionBytes` long after the header)
   * to `upstream` and resolves its answer, or undefined after `timeoutMs` or on a socket error.
   */
  ask(query: Buffer, questionBytes: number, upstream: Upstream, timeoutMs: number): Promise<Buffer | undefined> {
    const pooled = this.socketFor(upstream.address.includes(':') ? 'udp6' : 'udp4');
    let id = randomInt(0x10000);
    for (let tries = 0; pooled.waiting.has(id); tries++) {
      if (tries > 64) return Promise.resolve(undefined); // every id in use: the socket is full
      id = randomInt(0x10000);
    }
    const message = Buffer.from(query);
    message.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), timeoutMs);
      const done = (answer: Buffer | undefined) => {
        clearTimeout(timer);
        pooled.waiting.delete(id);
        resolve(answer);
      };
      pooled.waiting.set(id, { upstream, question: message.subarray(HEADER_BYTES, HEADER_BYTES + questionBytes), done });
      pooled.socket.send(message, upstream.port, upstream.address, (err) => err && done(undefined));
    });
  }

  close(): void {
    for (const pool of this.pools.values()) for (const pooled of pool) if (pooled) this.drop(pool, pooled);
    this.pools.clear();
  }

  private socketFor(family: 'udp4' | 'udp6'): PooledSocket {
    let pool = this.pools.get(family);
    if (!pool) {
      pool = Array.from({ length: UPSTREAM_SOCKETS }, () => undefined);
      this.pools.set(family, pool);
    }
    const slot = randomInt(UPSTREAM_SOCKETS);
    let pooled = pool[slot];
    if (!pooled) {
      const socket = createSocket(family);
      socket.unref(); // the gate's sockets never keep the worker alive
      const made: PooledSocket = { socket, waiting: new Map() };
      socket.on('message', (answer, from) => this.receive(made, answer, from));
      // A socket that fails is replaced; what waited on it gets no answer.
      socket.on('error', () => this.drop(pool, made));
      pool[slot] = pooled = made;
    }
    return pooled;
  }

  private receive(pooled: PooledSocket, answer: Buffer, from: RemoteInfo): void {
    if (answer.length < HEADER_BYTES) return;
    const waiting = pooled.waiting.get(answer.readUInt16BE(0));
    if (!waiting || from.address !== canonical(waiting.upstream.address) || from.port !== waiting.upstream.port) return;
    const question = answer.subarray(HEADER_BYTES, HEADER_BYTES + waiting.question.length);
    if (!question.equals(waiting.question)) return;
    waiting.done(answer);
  }

  private drop(pool: (PooledSocket | undefined)[], pooled: PooledSocket): void {
    const slot = pool.indexOf(pooled);
    if (slot !== -1) pool[slot] = undefined;
    for (const waiting of [...pooled.waiting.values()]) waiting.done(undefined);
    try {
      pooled.socket.close();
    } catch {
      // closed already
    }
  }
}
