import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';
import { splitHostPort } from '../address.js';
import { messageOf } from '../errors.js';

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

/** One route: requests whose path starts with `prefix` go to `handle`; upgrades (WebSocket) to `upgrade`, if it takes them. */
export interface Route {
  prefix: string;
  handle: Handler;
  upgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => Promise<void> | void;
}

export interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * How long a refused request's body is still read, and thrown away, after the answer: a client
 * writing its body only reads once it has written, and a connection closed under its writes is
 * reset before it sees why (nginx's lingering close does the same, for 30 s).
 */
const LINGER_MS = 5_000;

const continued = new WeakSet<IncomingMessage>();

/** Tells a client that sent `Expect: 100-continue` to send its body: call once the request is accepted. */
export function acceptBody(req: IncomingMessage, res: ServerResponse): void {
  if (req.headers.expect?.toLowerCase() !== '100-continue' || continued.has(req)) return;
  continued.add(req);
  res.writeContinue();
}

/**
 * A JSON answer that closes the connection (clients of error paths often do not read bodies).
 * A body still on its way is read and dropped for up to LINGER_MS first, unless the client is
 * waiting for 100-continue and so sends none.
 */
export function reply(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify({ error: status >= 400 ? message : undefined, message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
  const req = res.req;
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  const bodyComing = hasBody && !req.complete && !req.destroyed && (req.headers.expect?.toLowerCase() !== '100-continue' || continued.has(req));
  if (!bodyComing) return void res.end(text);
  res.write(text);
  const finish = () => {
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  const timer = setTimeout(finish, LINGER_MS);
  req.once('end', finish);
  req.once('close', finish);
  req.resume();
}

export interface HttpServerOptions {
  /** Certificate files: TLS when given. */
  tls: TlsFiles | undefined;
  /** Connections open at once; those past it are closed as they come. */
  maxConnections: number;
}

/** How often, at most, connections closed at the limit are logged (with their count). */
const DROPS_LOGGED_EVERY_MS = 60_000;

/**
 * Requests one connection may have waiting for their answers (HTTP/1.1 pipelining): each is a
 * handler run and an answer kept until the ones before it are read, so a client sending
 * thousands and reading none must not have them all.
 */
const MAX_PIPELINED = 8;

/** A connection that neither sends nor takes a byte this long is closed (a download nobody reads). */
const IDLE_MS = 60_000;

const answersWaiting = new WeakMap<Socket, number>();

/**
 * Resolves true once `res` is the answer its connection is sending (a pipelined request's waits
 * behind the ones before it), false if the connection closes first: a handler opens nothing (a
 * file to send) before then.
 */
export function answerTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (res.socket) return Promise.resolve(true);
  const socket = req.socket;
  if (socket.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onTurn = () => {
      socket.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off('socket', onTurn);
      resolve(false);
    };
    res.once('socket', onTurn);
    socket.once('close', onClose);
  });
}

/**
 * The worker's HTTP endpoint (artifacts, health, metrics), over TLS when given certificate
 * files, which are re-read when they change (rotation without a restart). A request no route
 * takes is 404; a handler that fails is 500 with nothing of the failure in the answer.
 *
 * Anyone who reaches the port can open connections, and each holds one of the worker's
 * descriptors (two while it downloads a file), which its sessions need too: past
 * `maxConnections` a new one is closed at once, and one with more than MAX_PIPELINED requests
 * waiting is closed. Node closes one that sends no complete request head within headersTimeout
 * (60 s), no complete request within requestTimeout (300 s), or nothing either way for IDLE_MS.
 */
export async function startHttpServer(
  address: string,
  routes: Route[],
  { tls, maxConnections }: HttpServerOptions,
  logger: Logger,
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const dispatch = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const waiting = (answersWaiting.get(socket) ?? 0) + 1;
    if (waiting > MAX_PIPELINED) return void socket.destroy();
    answersWaiting.set(socket, waiting);
    res.once('close', () => answersWaiting.set(socket, (answersWaiting.get(socket) ?? 1) - 1));
    const url = new URL(req.url ?? '/', 'http://worker');
    const route = routes.find((r) => url.pathname === r.prefix || url.pathname.startsWith(r.prefix.endsWith('/') ? r.prefix : `${r.prefix}/`));
    if (!route) return reply(res, 404, 'no such path');
    Promise.resolve(route.handle(req, res, url)).catch((err: Error) => {
      logger.error('HTTP request failed', { path: url.pathname, error: err.stack ?? String(err) });
      reply(res, 500, 'internal error');
    });
  };
  const read = (files: TlsFiles) => ({ cert: readFileSync(files.cert), key: readFileSync(files.key) });
  const secure = tls ? createHttpsServer(read(tls), dispatch) : undefined;
  const server: Server = secure ?? createHttpServer(dispatch);
  server.maxConnections = maxConnections;
  server.timeout = IDLE_MS;
  let dropped = 0;
  let droppedLoggedAt = -Infinity;
  server.on('drop', () => {
    dropped++;
    if (performance.now() - droppedLoggedAt < DROPS_LOGGED_EVERY_MS) return;
    droppedLoggedAt = performance.now();
    logger.warn('HTTP connections closed at WORKER_HTTP_MAX_CONNECTIONS', { max_connections: maxConnections, closed_since_start: dropped });
  });
  // Routes answer `Expect: 100-continue` themselves (acceptBody): a refused upload is refused before its body is sent.
  server.on('checkContinue', dispatch);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://worker');
    const route = routes.find((r) => r.upgrade && url.pathname.startsWith(r.prefix.endsWith('/') ? r.prefix : `${r.prefix}/`));
    if (!route?.upgrade) return void socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    Promise.resolve(route.upgrade(req, socket, head, url)).catch((err: Error) => {
      logger.error('HTTP upgrade failed', { path: url.pathname, error: err.stack ?? String(err) });
      socket.destroy();
    });
  });
  if (tls && secure) {
    const reload = () => {
      try {
        secure.setSecureContext(read(tls));
        logger.info('TLS certificate reloaded for the HTTP endpoint', { cert: tls.cert });
      } catch (err) {
        logger.warn('could not reload the TLS certificate; the previous one stays', { error: messageOf(err) });
      }
    };
    for (const file of [tls.cert, tls.key]) watchFile(file, { interval: 1000 }, reload).unref();
  }
  const [host, port] = splitHostPort(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const close = async () => {
    if (tls) for (const file of [tls.cert, tls.key]) unwatchFile(file);
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  };
  return { server, port: (server.address() as AddressInfo).port, close };
}
