// The sessions' only way out: every TCP connection a session's code opens is redirected here
// (egressRules.ts). The proxy learns where it was going (originalDestination.ts), which session
// it came from (its source address), reads the name it presents when the policy needs one,
// and either connects it onward from the worker's own namespace or resets it.

import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Logger } from '../../logger.js';
import { HttpRequestFramer, type Framed } from './httpRequests.js';
import { originalDestination } from './originalDestination.js';
import { MAX_PEEK_BYTES, presentedName } from './presentedName.js';
import type { SessionEgress } from './sessionEgress.js';

/** How long a connection may take to present its name (a TLS ClientHello, an HTTP head). */
const NAME_WAIT_MS = 5_000;
/** A client that says nothing this long speaks second (SSH, SMTP, databases): decided unnamed. */
const SILENT_CLIENT_MS = 300;
const CONNECT_TIMEOUT_MS = 30_000;

export class EgressProxy {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly sessionAt: (address: string) => SessionEgress | undefined,
    private readonly logger: Logger,
    private readonly findDestination: typeof originalDestination,
  ) {}

  static async start(sessionAt: (address: string) => SessionEgress | undefined, logger: Logger, findDestination = originalDestination): Promise<EgressProxy> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '0.0.0.0', () => resolve());
    });
    const proxy = new EgressProxy(server, sessionAt, logger, findDestination);
    server.on('connection', (socket) => void proxy.serve(socket));
    return proxy;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address ? address.port : 0;
  }

  private async serve(client: Socket): Promise<void> {
    this.track(client);
    client.on('error', () => undefined);
    const peer = { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 };
    const session = this.sessionAt(peer.address.replace(/^::ffff:/, ''));
    if (!session) {
      this.logger.debug('egress refused', { source: peer.address, reason: 'no session has this address' });
      return void client.resetAndDestroy();
    }
    if (!session.openConnection()) {
      this.logger.debug('egress refused', { session_id: session.sessionId, reason: 'the session holds its most connections' });
      return void client.resetAndDestroy();
    }
    client.once('close', () => session.closeConnection());
    const destination = await this.findDestination({ address: peer.address.replace(/^::ffff:/, ''), port: peer.port }, this.port).catch(() => undefined);
    if (!destination) {
      this.logger.debug('egress refused', { session_id: session.sessionId, reason: 'its original destination is not in the connection table' });
      return void client.resetAndDestroy();
    }
    let head: Buffer = Buffer.alloc(0);
    let name: string | undefined;
    let framer: HttpRequestFramer | undefined;
    if (session.needsName(destination.address, destination.port)) {
      const read = await readName(client);
      head = read.head;
      name = read.name;
      if (client.destroyed) return;
      if (read.unreadable) {
        this.logger.debug('egress refused', { session_id: session.sessionId, port: destination.port, reason: read.unreadable });
        return void client.resetAndDestroy();
      }
      // Plain HTTP let through by its name: every later request on it must name an allowed host too.
      if (read.http) framer = new HttpRequestFramer((next) => session.verdict(destination.address, destination.port, next).allowed);
    }
    const verdict = session.verdict(destination.address, destination.port, name);
    if (!verdict.allowed) {
      this.logger.debug('egress refused', { session_id: session.sessionId, port: destination.port, reason: verdict.reason });
      return void client.resetAndDestroy();
    }
    const upstream = connect({ host: destination.address, port: destination.port, allowHalfOpen: true });
    this.track(upstream);
    upstream.setTimeout(CONNECT_TIMEOUT_MS, () => upstream.destroy(new Error('connect timed out')));
    upstream.once('connect', () => upstream.setTimeout(0));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      this.logger.debug('egress ended', { session_id: session.sessionId, port: destination.port, reason: err.code ?? err.message });
      client.resetAndDestroy();
    });
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    if (framer) relayRequests(client, upstream, head, framer, (reason) => this.logger.debug('egress refused', { session_id: session.sessionId, reason }));
    else {
      if (head.length > 0) upstream.write(head);
      client.pipe(upstream);
    }
    upstream.pipe(client);
    client.resume();
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** Resets every connection of the session at `address` (its session is going). */
  dropSession(address: string): void {
    for (const socket of this.sockets) if (socket.remoteAddress?.replace(/^::ffff:/, '') === address) socket.resetAndDestroy();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * `client`'s bytes to `upstream` through `framer`, its first `head` included: each request's head
 * is judged before any of its bytes go on; a refused one resets the connection. After a request
 * that may switch protocols, the server's status line says whether the rest is a tunnel.
 */
function relayRequests(client: Socket, upstream: Socket, head: Buffer, framer: HttpRequestFramer, onRefused: (reason: string) => void): void {
  const send = (framed: Framed): void => {
    if ('refused' in framed) {
      onRefused(framed.refused);
      client.resetAndDestroy();
      upstream.destroy();
      return;
    }
    let room = true;
    for (const part of framed.forward) if (part.length > 0) room = upstream.write(part) && room;
    if (!room) {
      client.pause();
      upstream.once('drain', () => client.resume());
    }
  };
  let status = '';
  const watch = (chunk: Buffer) => {
    if (!framer.switching) return void upstream.off('data', watch); // its first response was not to a switch
    status += chunk.toString('latin1');
    const end = status.indexOf('\r\n');
    if (end === -1 && status.length < 4_096) return;
    upstream.off('data', watch);
    send(framer.switchedBy(end === -1 ? '' : status.slice(0, end)));
  };
  upstream.on('data', watch);
  client.on('data', (chunk: Buffer) => send(framer.push(chunk)));
  client.on('end', () => upstream.end());
  send(framer.push(head));
}

/** The first bytes of `client` until they say its name, or say there is none; the socket stays paused after. */
async function readName(client: Socket): Promise<{ head: Buffer; name: string | undefined; http: boolean; unreadable?: string }> {
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    let http = false;
    let unreadable: string | undefined;
    const finish = (name: string | undefined) => {
      clearTimeout(silent);
      clearTimeout(overall);
      client.off('data', onData);
      client.off('end', onEnd);
      client.pause();
      resolve({ head, name, http, unreadable });
    };
    const onData = (chunk: Buffer) => {
      clearTimeout(silent);
      head = Buffer.concat([head, chunk]);
      const presented = presentedName(head);
      if (presented.kind === 'more' && head.length < MAX_PEEK_BYTES) return;
      http = presented.kind === 'http';
      if (presented.kind === 'unreadable') unreadable = presented.why;
      finish(presented.kind === 'tls' || presented.kind === 'http' ? presented.name : undefined);
    };
    const onEnd = () => finish(undefined);
    const silent = setTimeout(() => head.length === 0 && finish(undefined), SILENT_CLIENT_MS);
    const overall = setTimeout(() => {
      // Begun and not finished: what it would name later is unknown, so it is not taken for none.
      if (head.length > 0) unreadable = 'its name (TLS SNI or HTTP Host) did not come whole in time';
      finish(undefined);
    }, NAME_WAIT_MS);
    client.on('data', onData);
    client.once('end', onEnd);
    client.resume();
  });
}
