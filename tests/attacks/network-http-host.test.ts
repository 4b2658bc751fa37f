import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import { makeFakeInternet, type FakeInternet } from '../helpers/fakeInternet.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The promise: under ALLOW_LIST ["api.test"], an address api.test shares with other.test opens
// api.test alone. The proxy read a plain-HTTP connection's first Host only, so the same
// connection could name other.test afterwards: in its request line (absolute-form, which a
// server takes over Host: RFC 9112 3.2.2), in a second kept-alive or pipelined request, or behind
// a request asking to switch protocols that the server answers as a plain request.
const API = '203.0.113.10'; // api.test and other.test

let net: FakeInternet;
let worker: RunningWorker;
let sessionId: string;

before(async () => {
  net = await makeFakeInternet({ names: { 'api.test': API, 'other.test': API } });
  worker = await startWorker({ namespace: net, env: { WORKER_DNS_SERVERS: net.dnsServer, WORKER_SPARE_SESSIONS: '0' } });
  ({ sessionId } = await worker.sessions.createSession({
    workspaceId: 'net',
    config: { network: { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['api.test'] } },
  }));
});
after(async () => {
  await worker?.stop();
  await net?.close();
});

/** Sends `raw` to api.test:80 from the session and returns what came back (or the error). */
async function send(raw: string): Promise<string> {
  const code = String.raw`
import socket
s = socket.create_connection((socket.gethostbyname('api.test'), 80), timeout=5)
s.sendall(open('raw.txt', 'rb').read())
data = b''
try:
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
except Exception as e:
    data += ('\n[' + type(e).__name__ + ']').encode()
print(data.decode(errors='replace'))
`;
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'send.py', contents: code });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'raw.txt', contents: raw });
  const out = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'python3 send.py' });
  return out.stdout!;
}

async function namesServedDuring(action: () => Promise<unknown>): Promise<string[]> {
  const before = (await net.hits()).length;
  await action();
  return (await net.hits()).slice(before).map((h) => h.name ?? '(none)');
}

test('the fixture keeps a plain HTTP/1.1 connection alive: two requests for api.test both go', async () => {
  const names = await namesServedDuring(() => send('GET /1 HTTP/1.1\r\nHost: api.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'));
  assert.deepEqual(names, ['api.test', 'api.test']);
});

test('an absolute-form request line naming other.test is refused', async () => {
  const names = await namesServedDuring(() => send('GET http://other.test/ HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n'));
  assert.deepEqual(names, []);
});

test('a kept-alive connection cannot name other.test in its second request', async () => {
  const names = await namesServedDuring(() =>
    send('GET /1 HTTP/1.1\r\nHost: api.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n'),
  );
  assert.ok(!names.includes('other.test'), names.join(','));
});

test('nor after a body (Content-Length or chunked) that hides the second request', async () => {
  const names = await namesServedDuring(async () => {
    await send('POST /1 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n');
    await send(
      'POST /1 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n',
    );
  });
  assert.ok(!names.includes('other.test'), names.join(','));
});

test('nor behind an Upgrade the server does not take', async () => {
  const names = await namesServedDuring(() =>
    send(
      'GET /1 HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n',
    ),
  );
  assert.ok(!names.includes('other.test'), names.join(','));
});
