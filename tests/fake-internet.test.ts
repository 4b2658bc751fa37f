// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { makeFakeInternet, type FakeInternet } from './helpers/fakeInternet.js';
import { waitFor } from './helpers/tasks.js';

// The fake internet the network tests (issue 22) run the worker against: its DNS, HTTP, TLS and
// raw TCP servers answer from inside the worker namespace, and that namespace reaches nothing
// else: not the host's loopback, not an address the fake internet does not serve.

const run = promisify(execFile);
const API = '203.0.113.10';
const CDN = '203.0.113.20';
let net: FakeInternet;
let hostServer: Server;
let hostLinksBefore: string;

const hostLinks = async () => (await run('ip', ['-o', 'link', 'show'])).stdout.replace(/\s+link\/.*$/gm, '');

before(async () => {
  hostLinksBefore = await hostLinks();
  net = await makeFakeInternet({
    names: { 'api.test': API, 'other.test': API, 'cdn.test': CDN },
    extraAddresses: ['169.254.169.254', '10.99.0.5'],
  });
  hostServer = createServer((socket) => socket.end('host loopback\n'));
  await new Promise<void>((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
});
after(async () => {
  await net?.close();
  hostServer?.close();
});

test('the DNS server answers A for its names (any case, UDP and TCP), nothing for AAAA, NXDOMAIN for others', async () => {
  const api = await net.probe({ kind: 'resolve', name: 'api.test' });
  assert.deepEqual([api.ok, api.addresses], [true, [API]]);
  assert.deepEqual((await net.probe({ kind: 'resolve', name: 'OTHER.Test' })).addresses, [API]);
  assert.deepEqual((await net.probe({ kind: 'resolve', name: 'cdn.test', tcp: true })).addresses, [CDN]);
  assert.equal((await net.probe({ kind: 'resolve', name: 'nowhere.test' })).error, 'ENOTFOUND');
  const queries = await net.dnsQueries();
  assert.deepEqual(
    queries.map((q) => [q.name, q.type, q.transport, q.answer]),
    [
      ['api.test', 'A', 'udp', 'A'],
      ['other.test', 'A', 'udp', 'A'],
      ['cdn.test', 'A', 'tcp', 'A'],
      ['nowhere.test', 'A', 'udp', 'NXDOMAIN'],
    ],
  );
  assert.ok(queries.every((q) => q.from === net.workerAddress));

  for (const tcp of [false, true]) assert.equal((await net.probe({ kind: 'resolve', name: 'api.test', type: 'AAAA', tcp })).error, 'ENODATA', 'no AAAA');

  // With `ip netns exec`, the worker namespace's resolv.conf names the fake DNS server.
  assert.match(await workerShell('getent ahostsv4 api.test'), new RegExp(`^${API.replace(/\./g, '\\.')}\\s+STREAM api\\.test\n`));
});

test('HTTP and HTTPS to a name answer from its address, and every connection is a hit with its name, port and path', async () => {
  const before = (await net.hits()).length;
  const plain = await net.probe({ kind: 'http', url: 'http://api.test/plain?x=1' });
  assert.deepEqual(plain.body, { served_by: API, port: 80, name: 'api.test', protocol: 'http', path: '/plain?x=1', host: 'api.test' });
  const secure = await net.probe({ kind: 'http', url: 'https://api.test/secure' });
  assert.equal(secure.status, 200);
  assert.deepEqual(secure.body, { served_by: API, port: 443, name: 'api.test', protocol: 'tls', path: '/secure', sni: 'api.test', host: 'api.test' });
  const cdn = await net.probe({ kind: 'http', url: 'https://cdn.test:8443/x' });
  assert.equal(cdn.body?.served_by, CDN);
  assert.equal(cdn.body?.port, 8443);
  const hits = (await net.hits()).slice(before);
  assert.deepEqual(
    hits.map(({ address, port, protocol, name, path, from }) => ({ address, port, protocol, name, path, from })),
    [
      { address: API, port: 80, protocol: 'http', name: 'api.test', path: '/plain?x=1', from: net.workerAddress },
      { address: API, port: 443, protocol: 'tls', name: 'api.test', path: '/secure', from: net.workerAddress },
      { address: CDN, port: 8443, protocol: 'tls', name: 'cdn.test', path: '/x', from: net.workerAddress },
    ],
  );
});

test("TLS to api.test's address with the SNI other.test is served as other.test: names sharing an address stay apart", async () => {
  const before = (await net.hits()).length;
  const tls = await net.probe({ kind: 'tls', address: API, port: 443, servername: 'other.test' });
  assert.ok(tls.ok, tls.error);
  assert.match(tls.altNames ?? '', /DNS:other\.test/);
  const fronted = await net.probe({ kind: 'http', url: 'https://other.test:8443/', address: API });
  assert.equal(fronted.body?.name, 'other.test');
  const hits = (await net.hits()).slice(before);
  assert.deepEqual(
    hits.map((h) => [h.protocol, h.port, h.sni]),
    [
      ['tls', 443, 'other.test'],
      ['tls', 8443, 'other.test'],
    ],
  );
  // A client that refuses the certificate (another CA) was still seen, by its SNI.
  const refused = await net.probe({ kind: 'tls', address: API, port: 443, servername: 'api.test', ca: '/etc/ssl/certs/ca-certificates.crt' });
  assert.equal(refused.ok, false);
  assert.equal((await net.hits()).at(-1)?.sni, 'api.test');
});

test('a raw TCP client that says nothing is greeted, on a named or an unnamed address (the fake metadata endpoint)', async () => {
  const metadata = await net.probe({ kind: 'tcp', address: '169.254.169.254', port: 8000, read: true });
  assert.equal(metadata.line, 'hello from 169.254.169.254:8000');
  const internal = await net.probe({ kind: 'tcp', address: '10.99.0.5', port: 80, read: true });
  assert.equal(internal.line, 'hello from 10.99.0.5:80');
  const hit = (await net.hits()).at(-1);
  assert.deepEqual(hit && { address: hit.address, port: hit.port, protocol: hit.protocol }, { address: '10.99.0.5', port: 80, protocol: 'tcp' });
});

test('an address the fake internet does not serve, or a port it does not, refuses at once', async () => {
  for (const [address, port] of [
    ['203.0.113.99', 80],
    ['8.8.8.8', 53],
    [API, 22],
    [net.dnsServer, 80],
  ] as const) {
    const started = Date.now();
    const result = await net.probe({ kind: 'tcp', address, port });
    assert.equal(result.error, 'ECONNREFUSED', `${address}:${port}`);
    assert.ok(Date.now() - started < 2000, `${address}:${port} took ${Date.now() - started} ms`);
  }
});

test("the worker namespace has no way to the host's: its loopback is its own, its only link the fake internet", async () => {
  const { port } = hostServer.address() as { port: number };
  const loopback = await net.probe({ kind: 'tcp', address: '127.0.0.1', port });
  assert.equal(loopback.error, 'ECONNREFUSED', "the host's loopback server is not there");
  // Any child of spawnInWorkerNamespace sees the same: only lo and the link, one default route.
  const links = await workerShell('ip -o link show | cut -d: -f2 | cut -d@ -f1; ip -4 route show');
  assert.deepEqual(
    links
      .trim()
      .split('\n')
      .map((line) => line.replace(/\s+/g, ' ').trim()),
    [
      'lo',
      'internet0',
      `default via ${net.gatewayAddress} dev internet0`,
      `${net.gatewayAddress.replace(/\.\d+$/, '.0')}/30 dev internet0 proto kernel scope link src ${net.workerAddress}`,
    ],
  );
  assert.equal(await hostLinks(), hostLinksBefore, "the host's namespace has no new link");
});

test('forwardIntoWorkerNamespace reaches a server listening inside from the host, over a unix socket', async () => {
  const server = net.spawnInWorkerNamespace(
    [process.execPath, '-e', "require('http').createServer((q, s) => s.end('inside ' + q.url)).listen(9000, '127.0.0.1', () => console.log('up'))"],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise((resolve) => server.stdout!.once('data', resolve));
  const address = await net.forwardIntoWorkerNamespace(9000);
  assert.match(address, /^unix:\//);
  const body = await new Promise<string>((resolve, reject) => {
    request({ socketPath: address.slice('unix:'.length), path: '/hello' }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve(text));
    })
      .on('error', reject)
      .end();
  });
  assert.equal(body, 'inside /hello');
});

test('close() removes both namespaces and kills what ran in them; a dead run’s leftovers go with the next fixture', async () => {
  // A namespace a crashed run left: named for a pid that no longer exists.
  const dead = spawn('true');
  await new Promise((resolve) => dead.once('exit', resolve));
  const stale = `cgfi-${dead.pid}-0-worker`;
  await run('ip', ['netns', 'add', stale]);

  const second = await makeFakeInternet({ names: { 'api.test': API } });
  assert.ok(!existsSync(`/run/netns/${stale}`), 'the stale namespace is gone');
  const sleeper = second.spawnInWorkerNamespace(['sleep', '600'], { stdio: 'ignore' });
  // In the worker namespace once the namespace lists a process.
  await waitFor(async () => (await run('ip', ['netns', 'pids', second.workerNamespace])).stdout.trim() !== '');
  const namespaces = [second.workerNamespace, second.worldNamespace];
  const listed = (await run('ip', ['netns', 'list'])).stdout;
  for (const name of namespaces) assert.match(listed, new RegExp(`^${name}\\b`, 'm'));
  const pids = (await run('ip', ['netns', 'pids', second.worldNamespace])).stdout.split(/\s+/).filter(Boolean).map(Number);
  assert.ok(pids.length > 0, 'the servers run in the world namespace');

  await second.close();
  await second.close(); // idempotent
  const after = (await run('ip', ['netns', 'list'])).stdout;
  for (const name of namespaces) assert.doesNotMatch(after, new RegExp(`^${name}\\b`, 'm'));
  assert.ok(!existsSync(`/etc/netns/${second.workerNamespace}`));
  assert.notEqual(sleeper.exitCode ?? sleeper.signalCode, null, 'the process in the worker namespace is gone');
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `server ${pid} is gone`);
  // The first fixture still serves.
  assert.equal((await net.probe({ kind: 'resolve', name: 'api.test' })).ok, true);
});

async function workerShell(script: string): Promise<string> {
  const child = net.spawnInWorkerNamespace(['sh', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await new Promise((resolve) => child.once('exit', resolve));
  return output;
}
