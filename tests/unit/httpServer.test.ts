import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, test } from 'node:test';
import type { Logger } from '../../src/logger.js';
import { waitFor } from '../helpers/tasks.js';
import { answerTurn, reply, startHttpServer, type Route } from '../../src/http/httpServer.js';

// A real server on 127.0.0.1, any free port: routing, the JSON error answers and the 500 path.

const logged: { message: string; meta: Record<string, unknown> }[] = [];
const logger = {
  error: (message: string, meta: Record<string, unknown>) => void logged.push({ message, meta }),
  info: () => undefined,
  warn: (message: string, meta: Record<string, unknown>) => void logged.push({ message, meta }),
} as unknown as Logger;

const routes: Route[] = [
  { prefix: '/exact', handle: (_req, res, url) => reply(res, 200, `exact ${url.pathname}${url.search}`) },
  { prefix: '/tree/', handle: (_req, res, url) => reply(res, 200, `tree ${url.pathname}`) },
  { prefix: '/boom', handle: async () => Promise.reject(new Error('/secret/host/path')) },
  {
    prefix: '/late-boom',
    handle: async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      throw new Error('after the headers');
    },
  },
];

const server = await startHttpServer('127.0.0.1:0', routes, { tls: undefined, maxConnections: 1024 }, logger);
after(() => server.close());

function get(path: string, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('it listens on the port it reports (port 0: a free one)', () => {
  assert.ok(server.port > 0);
  assert.equal((server.server.address() as { port: number }).port, server.port);
});

test('a route takes its exact path and, for a prefix ending in /, everything below it', async () => {
  assert.deepEqual(JSON.parse((await get('/exact?x=1')).body), { message: 'exact /exact?x=1' });
  assert.equal((await get('/exact/below')).status, 200, 'a path below a route without a slash is its too');
  assert.equal(JSON.parse((await get('/tree/a/b')).body).message, 'tree /tree/a/b');
});

test('a path no route takes is 404 in JSON, closing the connection; a lookalike prefix does not match', async () => {
  for (const path of ['/', '/nothing', '/exactly', '/tree']) {
    const { status, headers, body } = await get(path);
    assert.equal(status, 404, path);
    assert.equal(headers['content-type'], 'application/json');
    assert.equal(headers.connection, 'close');
    assert.deepEqual(JSON.parse(body), { error: 'no such path', message: 'no such path' });
  }
});

test('a handler that fails is a 500 saying nothing of the failure; the log has it', async () => {
  const { status, body } = await get('/boom');
  assert.equal(status, 500);
  assert.deepEqual(JSON.parse(body), { error: 'internal error', message: 'internal error' });
  assert.ok(!body.includes('secret'));
  const entry = logged.find((l) => l.meta.path === '/boom');
  assert.match(String(entry?.meta.error), /\/secret\/host\/path/);
});

test('a handler failing after its headers were sent has its connection cut rather than a second answer', async () => {
  await assert.rejects(get('/late-boom'), /aborted|socket hang up|ECONNRESET/);
});

test('past maxConnections a new connection is closed at once; the ones held stay, and once they go the server serves again', async () => {
  const small = await startHttpServer('127.0.0.1:0', routes, { tls: undefined, maxConnections: 3 }, logger);
  try {
    // Connections that never send a byte, each told apart by whether the server closed it.
    const open = (): Promise<{ socket: Socket; closed: () => boolean }> =>
      new Promise((resolve, reject) => {
        let closed = false;
        const socket = connect(small.port, '127.0.0.1', () => resolve({ socket, closed: () => closed }));
        socket.once('close', () => (closed = true));
        socket.once('error', reject);
        socket.resume();
      });
    const held = await Promise.all(Array.from({ length: 3 }, open));
    const connections = () => new Promise<number>((resolve) => small.server.getConnections((_err, n) => resolve(n)));
    await waitFor(async () => (await connections()) === 3);
    const past = await Promise.all(Array.from({ length: 5 }, open));
    await waitFor(() => past.every((c) => c.closed()), 5_000).catch(() => undefined); // the assertion below says what was left
    assert.deepEqual(
      past.map((c) => c.closed()),
      past.map(() => true),
      'the server closed every connection past its limit',
    );
    assert.ok(logged.some((l) => l.message === 'HTTP connections closed at WORKER_HTTP_MAX_CONNECTIONS'));
    assert.ok(!held.some((c) => c.closed()), 'the connections within the limit are kept');
    for (const c of held) c.socket.destroy();
    await waitFor(async () => (await connections()) === 0);
    const answer = await new Promise<number>((resolve, reject) =>
      request({ host: '127.0.0.1', port: small.port, path: '/exact' }, (res) => (res.resume(), resolve(res.statusCode!)))
        .on('error', reject)
        .end(),
    );
    assert.equal(answer, 200);
  } finally {
    await small.close();
  }
});

test('pipelined requests: a handler waiting for its answer’s turn gets it in order; more than 8 waiting close the connection', async () => {
  const order: number[] = [];
  const turned = await startHttpServer(
    '127.0.0.1:0',
    [
      {
        prefix: '/n',
        handle: async (req, res, url) => {
          if (!(await answerTurn(req, res))) return;
          order.push(Number(url.searchParams.get('i')));
          res.end(`answer ${url.searchParams.get('i')}\n`);
        },
      },
    ],
    { tls: undefined, maxConnections: 16 },
    logger,
  );
  const send = (count: number) =>
    new Promise<{ got: string; reset: boolean }>((resolve) => {
      const socket = connect(turned.port, '127.0.0.1');
      let got = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (got += chunk));
      socket.on('error', () => undefined);
      socket.on('close', (reset) => resolve({ got, reset }));
      socket.write(
        Array.from({ length: count }, (_, i) => `GET /n?i=${i} HTTP/1.1\r\nHost: t\r\n${i === count - 1 ? 'Connection: close\r\n' : ''}\r\n`).join(''),
      );
    });
  try {
    const few = await send(5);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.deepEqual(
      [...few.got.matchAll(/answer (\d)/g)].map((m) => Number(m[1])),
      [0, 1, 2, 3, 4],
    );
    order.length = 0;
    const many = await send(50);
    assert.ok(!many.got.includes('answer 9'), `the connection was cut before the ninth answer: ${JSON.stringify(many.got.slice(-80))}`);
  } finally {
    await turned.close();
  }
});
