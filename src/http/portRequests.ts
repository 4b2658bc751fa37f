import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { UrlSigner } from '../storage/urlSigner.js';
import type { PortLinks } from '../tools/tool.js';
import { reply, type Route } from './httpServer.js';

/**
 * Port URLs: signed, expiring URLs on the worker's HTTP endpoint that reach a port on a
 * session's own loopback, HTTP and WebSocket alike. The signature covers the session, the port
 * and the expiry: a URL changed in any of them, or expired, is 403 and reaches nothing.
 *
 *   /ports/<session id>/<port>/<expiry, ms>/<signature>/<path on the port>
 */

const PREFIX = '/ports';
/** How long a forwarded request waits without a byte from the session's server. */
const ANSWER_IDLE_MS = 60_000;
/** The longest a port URL may live. */
export const MAX_PORT_URL_SECONDS = 7 * 24 * 3600;

const fieldsOf = (sessionId: string, port: number, expiresMs: number) => ['port', sessionId, String(port), String(expiresMs)];

export function portLinks(signer: UrlSigner, publicUrl: () => string): PortLinks {
  return {
    maxExpiresSeconds: MAX_PORT_URL_SECONDS,
    url(sessionId, port, expiresSeconds) {
      const expiresMs = Date.now() + expiresSeconds * 1000;
      const signature = signer.sign(fieldsOf(sessionId, port, expiresMs));
      return `${publicUrl()}${PREFIX}/${encodeURIComponent(sessionId)}/${port}/${expiresMs}/${signature}/`;
    },
  };
}

/** What the routes need of the sessions: a connection to a port on one's loopback (SessionSandbox.connectPort). */
export interface PortSessions {
  connect(sessionId: string, port: number): Promise<Duplex>;
}

interface Target {
  sessionId: string;
  port: number;
  /** The path (and query) asked of the port. */
  path: string;
}

/** The signed target of a port URL, or the status and message to refuse it with. */
function targetOf(signer: UrlSigner, url: URL): Target | { status: number; message: string } {
  const [sessionPart, portText, expiresText, signature, ...rest] = url.pathname.slice(PREFIX.length + 1).split('/');
  if (sessionPart === undefined || portText === undefined || expiresText === undefined || signature === undefined)
    return { status: 404, message: 'not a port URL' };
  let sessionId: string;
  try {
    sessionId = decodeURIComponent(sessionPart);
  } catch {
    return { status: 403, message: 'bad signature' };
  }
  const port = Number(portText);
  const expiresMs = Number(expiresText);
  // Only the very text issued: another spelling of the same fields (08080, %73ession-…) is a changed URL.
  const canonical = encodeURIComponent(sessionId) === sessionPart && String(port) === portText && String(expiresMs) === expiresText;
  if (!canonical || !/^\d{1,5}$/.test(portText) || !/^\d{1,15}$/.test(expiresText) || !signer.verify(fieldsOf(sessionId, port, expiresMs), signature))
    return { status: 403, message: 'bad signature: this URL was not issued by this worker, or was changed' };
  if (Date.now() > expiresMs) return { status: 403, message: 'this port URL has expired; ask port.url for a new one' };
  return { sessionId, port, path: `/${rest.join('/')}${url.search}` };
}

/** The request's headers for the port: its own, but Host names the port on localhost (what a dev server expects). */
function forwardedHeaders(req: IncomingMessage, port: number): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) if (value !== undefined) headers[name] = value;
  headers.host = `localhost:${port}`;
  return headers;
}

/** Interim (1xx) answers a session's server may send before its answer. */
const MAX_INTERIM_ANSWERS = 8;

/** Passes one HTTP request to the session's server over `stream`, and its answer back, checked. */
function forward(req: IncomingMessage, res: ServerResponse, target: Target, stream: Duplex, logger: Logger): void {
  const forwarded = httpRequest({
    method: req.method,
    path: target.path,
    headers: forwardedHeaders(req, target.port),
    createConnection: () => stream,
  });
  // The session's server is the session's: whatever it answers is checked before it is passed on.
  const refuse = (why: string) => {
    logger.debug('port URL: no usable answer from the port', { session_id: target.sessionId, port: target.port, error: why });
    if (!res.headersSent) reply(res, 502, `no usable answer on port ${target.port} of the session (${why})`);
    else res.destroy();
    stream.destroy();
  };
  // Interim answers (1xx) are parsed by Node as fast as they come, whoever reads: a server
  // sending them without end would take the worker's time from every session. A few are allowed.
  let interim = 0;
  forwarded.on('information', () => {
    if (++interim > MAX_INTERIM_ANSWERS) refuse(`more than ${MAX_INTERIM_ANSWERS} interim (1xx) answers`);
  });
  forwarded.on('response', (answer) => {
    const status = answer.statusCode ?? 0;
    if (status < 200 || status > 599) return refuse(`status ${status}`);
    try {
      // Its reason phrase is not passed on: Node's parser takes phrases writeHead refuses.
      res.writeHead(status, answer.headers);
    } catch (err) {
      answer.destroy();
      return refuse(messageOf(err));
    }
    answer.on('error', () => res.destroy());
    answer.pipe(res);
  });
  // An upgrade nobody asked for (101 to a plain request): refused, as any answer it cannot be.
  forwarded.on('upgrade', (_answer, socket) => {
    socket.destroy();
    refuse('an upgrade to a plain request');
  });
  forwarded.setTimeout(ANSWER_IDLE_MS, () => forwarded.destroy(new Error(`nothing for ${ANSWER_IDLE_MS / 1000} s`)));
  forwarded.on('error', (err) => refuse(err.message));
  res.once('close', () => stream.destroy());
  req.pipe(forwarded);
}

export function portRoutes(signer: UrlSigner, sessions: PortSessions, logger: Logger): Route {
  return {
    prefix: PREFIX,
    async handle(req, res, url) {
      const target = targetOf(signer, url);
      if ('status' in target) return reply(res, target.status, target.message);
      let stream: Duplex;
      try {
        stream = await sessions.connect(target.sessionId, target.port);
      } catch (err) {
        return reply(res, 404, messageOf(err));
      }
      forward(req, res, target, stream, logger);
    },
    async upgrade(req, socket, head, url) {
      socket.on('error', () => undefined);
      const target = targetOf(signer, url);
      if ('status' in target) {
        socket.end(`HTTP/1.1 ${target.status} Refused\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
        return;
      }
      let stream: Duplex;
      try {
        stream = await sessions.connect(target.sessionId, target.port);
      } catch {
        socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      stream.on('error', () => socket.destroy());
      // The request as it came, but its path and Host; then both ways as they are (the WebSocket).
      const lines = [`${req.method} ${target.path} HTTP/1.1`];
      for (const [name, value] of Object.entries(forwardedHeaders(req, target.port))) {
        for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${one}`);
      }
      stream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) stream.write(head);
      socket.pipe(stream).pipe(socket);
      socket.once('close', () => stream.destroy());
      stream.once('close', () => socket.destroy());
    },
  };
}
