import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import { makeFakeInternet, type FakeInternet } from '../helpers/fakeInternet.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The promise: under ALLOW_LIST ["api.test:443"], an address api.test shares with other.test
// opens api.test alone. Found by an attack (a helper session): the proxy read the first TLS
// record only; a ClientHello split across two records (legal, RFC 8446 5.1) read as one that
// presents no name, which a name:port rule lets through, and its second record carried any SNI.
const API = '203.0.113.10'; // api.test and other.test

let net: FakeInternet;
let worker: RunningWorker;

before(async () => {
  net = await makeFakeInternet({ names: { 'api.test': API, 'other.test': API } });
  worker = await startWorker({ namespace: net, env: { WORKER_DNS_SERVERS: net.dnsServer, WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => {
  await worker?.stop();
  await net?.close();
});

/** A TLS client whose ClientHello goes out in two records, split after `cut` bytes of the handshake. */
const CLIENT = String.raw`
import socket, ssl, sys
sni, cut = sys.argv[1], int(sys.argv[2])
socket.gethostbyname('api.test')
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
body = hello[5:]
record = lambda b: bytes([0x16, 3, 1]) + len(b).to_bytes(2, 'big') + b
s = socket.create_connection(('${API}', 443), timeout=5)
s.sendall(record(body[:cut]) + record(body[cut:]))
try:
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending: s.sendall(outgoing.read())
            data = s.recv(65536)
            if not data: raise ConnectionError('closed')
            incoming.write(data)
    print('handshake')
except Exception as e:
    print('refused', type(e).__name__)
`;

async function attempt(sni: string, cut: number): Promise<{ out: string; seen: (string | undefined)[] }> {
  const { sessionId } = await worker.sessions.createSession({
    workspaceId: 'tls',
    config: { network: { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['api.test:443'] } },
  });
  try {
    await runTool(worker.tasks, sessionId, 'fs.write', { path: 'c.py', contents: CLIENT });
    const before = (await net.hits()).length;
    const out = (await runTool(worker.tasks, sessionId, 'run.shell', { command: `python3 c.py ${sni} ${cut}` })).stdout!.trim();
    return { out, seen: (await net.hits()).slice(before).map((h) => h.sni) };
  } finally {
    await worker.sessions.destroySession({ sessionId });
  }
}

test('a ClientHello split across TLS records is read whole: its own name passes, any other is refused', async () => {
  for (const cut of [3, 40]) {
    const own = await attempt('api.test', cut);
    assert.equal(own.out, 'handshake', `api.test, split after ${cut}: ${own.out}`);
    assert.deepEqual(own.seen, ['api.test']);
    for (const other of ['other.test', 'evil.example']) {
      const sent = await attempt(other, cut);
      assert.deepEqual(sent.seen, [], `${other}, split after ${cut}, reached the server (${sent.out})`);
    }
  }
});
