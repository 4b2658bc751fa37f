// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { NetworkMode } from '../gen/codegen/v1/common.js';
import { makeFakeInternet, type FakeInternet } from './helpers/fakeInternet.js';
import { runTask, runTool, statusOf } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// Issue 22. The worker runs in a namespace whose only way out is a fake internet of the test's
// own (tests/helpers/fakeInternet.ts): whatever the implementation does, nothing leaves the
// machine. Session code probes from inside its sandbox; the fake internet's record of every
// connection it accepted says what really got through.

const API = '203.0.113.10'; // api.test and other.test share it
const CDN = '203.0.113.20'; // a.cdn.test, cdn.test
const RAW = '198.51.100.7'; // no name
const METADATA = '169.254.169.254';
const PRIVATE = '10.99.0.5';

let net: FakeInternet;
let worker: RunningWorker;
/** A worker killed and followed by another on its data directory: its stop() removes that directory, once the other has stopped. */
let killed: RunningWorker | undefined;

before(async () => {
  net = await makeFakeInternet({
    names: { 'api.test': API, 'other.test': API, 'a.cdn.test': CDN, 'cdn.test': CDN },
    extraAddresses: [RAW, METADATA, PRIVATE],
  });
  worker = await start();
});
after(async () => {
  await worker?.stop();
  await killed?.stop();
  await net?.close();
});

function start(dataDir?: string): Promise<RunningWorker> {
  return startWorker({
    namespace: net,
    dataDir,
    env: { WORKER_DNS_SERVERS: net.dnsServer, WORKER_SPARE_SESSIONS: '1', WORKER_MAX_SESSIONS: '40', WORKER_CA_BUNDLE: net.caFile },
  });
}

/** Session code trying each probe from inside its sandbox; one line of JSON per probe. */
const PROBE = String.raw`
import json, socket, ssl, sys
def attempt(p):
    try:
        if p['kind'] == 'resolve':
            return {'ok': True, 'addresses': sorted({a[4][0] for a in socket.getaddrinfo(p['name'], 80, socket.AF_INET, socket.SOCK_STREAM)})}
        address = p.get('address') or socket.gethostbyname(p['host'])
        s = socket.create_connection((address, p['port']), timeout=5)
        if p['kind'] == 'tls':
            ctx = ssl.create_default_context(cafile='ca.pem')
            ctx.check_hostname = False
            s = ctx.wrap_socket(s, server_hostname=p.get('sni'))
        if p['kind'] == 'tcp':
            # A client that speaks second: the server's greeting is the answer.
            data = s.recv(65536)
            s.close()
            return {'ok': len(data) > 0, 'body': data.decode(errors='replace')}
        else:
            s.sendall(('GET /probe HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' % p.get('hostHeader', p.get('host', address))).encode())
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        s.close()
        head, _, body = data.partition(b'\r\n\r\n')
        return {'ok': head.split(b' ')[1:2] == [b'200'], 'body': body.decode(errors='replace')}
    except Exception as e:
        return {'ok': False, 'error': type(e).__name__ + ': ' + str(e)}
for p in json.loads(sys.argv[1] if len(sys.argv) > 1 else open('probes.json').read()):
    print(json.dumps(attempt(p)))
`;

type Probe =
  { kind: 'resolve'; name: string } | { kind: 'http' | 'tls' | 'tcp'; host?: string; address?: string; port: number; sni?: string; hostHeader?: string };

interface ProbeResult {
  ok: boolean;
  body?: string;
  addresses?: string[];
  error?: string;
}

async function session(mode: NetworkMode, allow: string[] = [], w = worker): Promise<string> {
  const { sessionId } = await w.sessions.createSession({ workspaceId: 'net', config: { network: { mode, allow } } });
  await runTool(w.tasks, sessionId, 'fs.write', { path: 'ca.pem', contents: net.caPem });
  await runTool(w.tasks, sessionId, 'fs.write', { path: 'probe.py', contents: PROBE });
  return sessionId;
}

async function probe(sessionId: string, probes: Probe[], w = worker): Promise<ProbeResult[]> {
  await runTool(w.tasks, sessionId, 'fs.write', { path: 'probes.json', contents: JSON.stringify(probes) });
  const out = await runTool(w.tasks, sessionId, 'run.shell', { command: 'python3 probe.py' });
  return out
    .stdout!.trim()
    .split('\n')
    .map((line) => JSON.parse(line) as ProbeResult);
}

/** Hits the fake internet recorded from now on, by address. */
async function hitsDuring(action: () => Promise<unknown>): Promise<string[]> {
  const before = (await net.hits()).length;
  await action();
  return (await net.hits()).slice(before).map((h) => `${h.address}:${h.port}${h.name ? ` ${h.name}` : ''}`);
}

const served = (result: ProbeResult, address: string) => result.ok && (JSON.parse(result.body!) as { served_by: string }).served_by === address;

/** What the worker said about the session's connections (a probe that failed says why here). */
const egressSaid = (w = worker) => JSON.stringify(w.logs.filter((l) => String(l.message).startsWith('egress')).slice(-20));

test('NONE: no connection anywhere, no name resolved', async () => {
  const id = await session(NetworkMode.NETWORK_MODE_NONE);
  let results: ProbeResult[] = [];
  const hits = await hitsDuring(async () => {
    results = await probe(id, [
      { kind: 'resolve', name: 'api.test' },
      { kind: 'http', address: API, port: 80, hostHeader: 'api.test' },
      { kind: 'http', address: METADATA, port: 80 },
      { kind: 'tcp', address: '127.0.0.1', port: worker.grpcPort },
      { kind: 'tcp', address: net.workerAddress, port: worker.grpcPort },
    ]);
  });
  for (const r of results) assert.equal(r.ok, false, JSON.stringify(r));
  assert.deepEqual(hits, []);
});

test("OPEN: the internet yes; the host's loopback, the worker's ports, link-local and private addresses no", async () => {
  const id = await session(NetworkMode.NETWORK_MODE_OPEN);
  let results: ProbeResult[] = [];
  const hits = await hitsDuring(async () => {
    results = await probe(id, [
      { kind: 'resolve', name: 'api.test' },
      { kind: 'http', host: 'api.test', port: 80 },
      { kind: 'tls', host: 'api.test', port: 443, sni: 'api.test' },
      { kind: 'tcp', address: RAW, port: 8000 },
      { kind: 'http', address: METADATA, port: 80 },
      { kind: 'http', address: PRIVATE, port: 80 },
      { kind: 'tcp', address: net.workerAddress, port: worker.grpcPort },
      { kind: 'tcp', address: net.workerAddress, port: worker.httpPort },
      { kind: 'tcp', address: '127.0.0.1', port: worker.grpcPort },
    ]);
  });
  assert.deepEqual(results[0]!.addresses, [API]);
  assert.ok(served(results[1]!, API), `${JSON.stringify(results[1])} ${egressSaid()}`);
  assert.ok(served(results[2]!, API), `${JSON.stringify(results[2])} ${egressSaid()}`);
  assert.ok(results[3]!.ok && results[3]!.body!.startsWith(`hello from ${RAW}:8000`), `${JSON.stringify(results[3])} ${egressSaid()}`);
  for (const r of results.slice(4)) assert.equal(r.ok, false, JSON.stringify(r));
  assert.deepEqual(hits.sort(), [`${API}:443 api.test`, `${API}:80 api.test`, `${RAW}:8000`].sort());
});

test('ALLOW_LIST ["api.test"]: api.test over HTTP and TLS; other.test, a raw IP, api.test\'s IP under another name: no', async () => {
  const id = await session(NetworkMode.NETWORK_MODE_ALLOW_LIST, ['api.test']);
  let results: ProbeResult[] = [];
  const hits = await hitsDuring(async () => {
    results = await probe(id, [
      { kind: 'http', host: 'api.test', port: 80 },
      { kind: 'tls', host: 'api.test', port: 443, sni: 'api.test' },
      { kind: 'resolve', name: 'other.test' },
      { kind: 'http', address: API, port: 80, hostHeader: 'other.test' },
      { kind: 'tls', address: API, port: 443, sni: 'other.test' },
      { kind: 'tls', address: API, port: 443 },
      { kind: 'http', address: CDN, port: 80, hostHeader: 'api.test' },
      { kind: 'tcp', address: API, port: 8000 },
    ]);
  });
  assert.ok(served(results[0]!, API), JSON.stringify(results[0]));
  assert.ok(served(results[1]!, API), JSON.stringify(results[1]));
  for (const r of results.slice(2)) assert.equal(r.ok, false, JSON.stringify(r));
  assert.deepEqual(hits.sort(), [`${API}:443 api.test`, `${API}:80 api.test`].sort());
});

test('ALLOW_LIST: a wildcard is its subdomains; a CIDR its addresses; a port only that port', async () => {
  const id = await session(NetworkMode.NETWORK_MODE_ALLOW_LIST, ['*.cdn.test', '198.51.100.0/24:8000', 'api.test:443']);
  const results = await probe(id, [
    { kind: 'http', host: 'a.cdn.test', port: 80 },
    { kind: 'resolve', name: 'cdn.test' },
    { kind: 'tcp', address: RAW, port: 8000 },
    { kind: 'tcp', address: RAW, port: 8443 },
    { kind: 'tls', host: 'api.test', port: 443, sni: 'api.test' },
    { kind: 'http', host: 'api.test', port: 80 },
  ]);
  assert.deepEqual(
    results.map((r) => r.ok),
    [true, false, true, false, true, false],
    JSON.stringify(results),
  );
});

test("WORKER_CA_BUNDLE: code with a network trusts the operator's CA as it trusts the system's; code without one is not told", async () => {
  const open = await session(NetworkMode.NETWORK_MODE_OPEN);
  const code = `import urllib.request, json\nprint(json.load(urllib.request.urlopen('https://api.test/', timeout=5))['served_by'])`;
  assert.equal((await runTool(worker.tasks, open, 'run.python', { code })).stdout, `${API}\n`);
  const closed = await session(NetworkMode.NETWORK_MODE_NONE);
  assert.equal((await runTool(worker.tasks, closed, 'run.shell', { command: 'echo ${SSL_CERT_FILE:-unset}' })).stdout, 'unset\n');
});

test('two sessions both serve on :8000, and each reaches only its own', async () => {
  const serve = (word: string) =>
    `import socket, threading\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8000)); s.listen()\n` +
    `def one():\n    c, _ = s.accept(); c.recv(100); c.sendall(b'${word}'); c.close()\nthreading.Thread(target=one, daemon=True).start()\n` +
    `c = socket.create_connection(('127.0.0.1', 8000), timeout=5); c.sendall(b'x'); print(c.recv(100).decode())`;
  const [a, b] = await Promise.all([session(NetworkMode.NETWORK_MODE_OPEN), session(NetworkMode.NETWORK_MODE_OPEN)]);
  const [outA, outB] = await Promise.all([
    runTool(worker.tasks, a, 'run.python', { code: serve('session-a') }),
    runTool(worker.tasks, b, 'run.python', { code: serve('session-b') }),
  ]);
  assert.equal(outA.stdout, 'session-a\n');
  assert.equal(outB.stdout, 'session-b\n');
});

test("a session cannot reach another session's address, even with the network open", async () => {
  const [a, b] = await Promise.all([session(NetworkMode.NETWORK_MODE_OPEN), session(NetworkMode.NETWORK_MODE_OPEN)]);
  // b serves on its own address for a few seconds and says where; a tries it meanwhile.
  const serve =
    `import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(('${API}', 80)); me = u.getsockname()[0]\n` +
    `s = socket.socket(); s.bind((me, 8000)); s.listen(); s.settimeout(3)\nopen('address', 'w').write(me)\n` +
    `try:\n    c, _ = s.accept(); c.sendall(b'reached b'); print('accepted')\nexcept socket.timeout:\n    print('nobody came')`;
  const served = runTool(worker.tasks, b, 'run.python', { code: serve });
  let address = '';
  while (!address) {
    const read = await runTask(worker.tasks, { sessionId: b, toolName: 'fs.read', arguments: { path: 'address' } });
    address = read.result?.outputs.contents ?? '';
  }
  const [fromA] = await probe(a, [{ kind: 'tcp', address, port: 8000 }]);
  assert.equal(fromA?.ok, false, JSON.stringify(fromA));
  assert.equal((await served).stdout, 'nobody came\n');
});

test("a session holding its most connections is refused more; its neighbour's connect is not", async () => {
  const [greedy, neighbour] = await Promise.all([session(NetworkMode.NETWORK_MODE_OPEN), session(NetworkMode.NETWORK_MODE_OPEN)]);
  // A connection past the limit is reset as soon as it is accepted: the reset can reach the
  // socket before create_connection() has looked at it, and then it is the connect that fails.
  const hold =
    `import socket\nheld, greeted = [], 0\nfor i in range(300):\n    try:\n        held.append(socket.create_connection(('${RAW}', 8000), timeout=5))\n    except OSError:\n        pass\n` +
    `for s in held:\n    try:\n        greeted += s.recv(100).startswith(b'hello')\n    except OSError:\n        pass\nprint(greeted)`;
  const greedyRun = runTool(worker.tasks, greedy, 'run.python', { code: hold });
  const [fromNeighbour] = await probe(neighbour, [{ kind: 'tcp', address: RAW, port: 8000 }]);
  assert.ok(fromNeighbour?.ok, JSON.stringify(fromNeighbour));
  const greeted = Number((await greedyRun).stdout);
  assert.ok(greeted > 0 && greeted <= 256, `${greeted} of 300 connections held at once got through`);
});

test('GetSessionStatus shows the policy; a wider mode than WORKER_NETWORK_MAX is PERMISSION_DENIED naming it', async () => {
  const id = await session(NetworkMode.NETWORK_MODE_ALLOW_LIST, ['API.test', '*.cdn.test:443']);
  const status = await worker.sessions.getSessionStatus({ sessionId: id });
  assert.deepEqual(status.network, { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['api.test', '*.cdn.test:443'] });
  const plain = await worker.sessions.createSession({ workspaceId: 'net' });
  assert.deepEqual((await worker.sessions.getSessionStatus({ sessionId: plain.sessionId })).network, { mode: NetworkMode.NETWORK_MODE_NONE, allow: [] });

  const narrow = await startWorker({ env: { WORKER_NETWORK_MAX: 'allow_list', WORKER_SPARE_SESSIONS: '0' } });
  try {
    const open = narrow.sessions.createSession({ workspaceId: 'net', config: { network: { mode: NetworkMode.NETWORK_MODE_OPEN, allow: [] } } });
    await assert.rejects(
      open,
      (err: { code: Status; details: string }) => err.code === Status.PERMISSION_DENIED && /WORKER_NETWORK_MAX=allow_list/.test(err.details),
    );
    const bad = narrow.sessions.createSession({ workspaceId: 'net', config: { network: { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['no spaces'] } } });
    assert.equal(await statusOf(bad), Status.INVALID_ARGUMENT);
  } finally {
    await narrow.stop();
  }
});

test('refusals are counted per session, with no host names in the labels', async () => {
  const id = await session(NetworkMode.NETWORK_MODE_ALLOW_LIST, ['api.test']);
  await probe(id, [
    { kind: 'resolve', name: 'other.test' },
    { kind: 'http', address: API, port: 80, hostHeader: 'other.test' },
  ]);
  const socketPath = (await net.forwardIntoWorkerNamespace(worker.httpPort)).replace(/^unix:/, '');
  const metrics = await new Promise<string>((resolve, reject) => {
    request({ socketPath, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .end();
  });
  const lines = metrics.split('\n').filter((l) => l.startsWith('codegen_network_refused_total{') && l.includes(id));
  assert.deepEqual(lines.map((l) => l.replace(/.*kind="(\w+)".* (\d+)$/, '$1 $2')).sort(), ['connect 1', 'dns 1']);
  assert.ok(!metrics.includes('other.test') && !metrics.includes('api.test'));
});

test('the policy survives a kill -9 of the worker, and a checkpoint and restore', async () => {
  const id = await session(NetworkMode.NETWORK_MODE_ALLOW_LIST, ['api.test']);
  const { checkpointId } = await worker.sessions.checkpointSession({ sessionId: id });
  const dataDir = worker.dataDir;
  killed = worker;
  worker.process.kill('SIGKILL');
  await new Promise((resolve) => worker.process.once('exit', resolve));
  const again = await start(dataDir);
  try {
    const expected = { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['api.test'] };
    assert.deepEqual((await again.sessions.getSessionStatus({ sessionId: id })).network, expected);
    const adopted = await probe(
      id,
      [
        { kind: 'http', host: 'api.test', port: 80 },
        { kind: 'resolve', name: 'other.test' },
        { kind: 'http', address: METADATA, port: 80 },
      ],
      again,
    );
    assert.deepEqual(
      adopted.map((r) => r.ok),
      [true, false, false],
      JSON.stringify(adopted),
    );
    const restored = await again.sessions.restoreSession({ checkpointId });
    assert.deepEqual((await again.sessions.getSessionStatus({ sessionId: restored.sessionId })).network, expected);
    const after = await probe(
      restored.sessionId,
      [
        { kind: 'http', host: 'api.test', port: 80 },
        { kind: 'http', address: API, port: 80, hostHeader: 'other.test' },
      ],
      again,
    );
    assert.deepEqual(
      after.map((r) => r.ok),
      [true, false],
    );
  } finally {
    worker = again;
  }
});
