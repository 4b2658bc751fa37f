import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import { MAX_DNS_PER_SECOND, MAX_TRACKED_FLOWS } from '../../src/sandbox/network/egressRules.js';
import { UPSTREAM_SOCKETS } from '../../src/sandbox/network/upstreamSockets.js';
import { makeFakeInternet, type FakeInternet } from '../helpers/fakeInternet.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The promise: no session can spend, through the network, what the others need. Found by an
// attack (a helper session): DNS questions to random addresses, each from a new port, filled the
// kernel's connection table (64,000 entries from one session; the proxy reads all of it for each
// connection, and every session's connections went 50-300x slower), and a session asking its
// resolver as fast as it could kept the worker's event loop busy (a neighbour's run.python 2.6-4.4x).

let net: FakeInternet;
let worker: RunningWorker;

before(async () => {
  net = await makeFakeInternet({ names: { 'api.test': '203.0.113.10' } });
  worker = await startWorker({ namespace: net, env: { WORKER_DNS_SERVERS: net.dnsServer, WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => {
  await worker?.stop();
  await net?.close();
});

/** A DNS question for `name` (type A), as Python bytes, with id `i`. */
const QUESTION = String.raw`
import struct
def question(i, name):
    labels = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
    return struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0) + labels + struct.pack('>HH', 1, 1)
`;

/** Entries of the worker's namespace's connection tracking table that `match`. */
const trackedWhere = (match: (entry: string) => boolean) =>
  execFileSync('ip', ['netns', 'exec', net.workerNamespace, 'cat', '/proc/net/nf_conntrack'], { encoding: 'latin1', maxBuffer: 64 << 20 })
    .split('\n')
    .filter(match).length;
const tracked = () => trackedWhere((l) => l.includes(' src=10.'));

async function session(): Promise<string> {
  const { sessionId } = await worker.sessions.createSession({
    workspaceId: 'flows',
    config: { network: { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['api.test'] } },
  });
  return sessionId;
}

test(`one session holds at most ${MAX_TRACKED_FLOWS} of the kernel's tracked flows, and the others still connect`, async () => {
  const greedy = await session();
  const bystander = await session();
  const code = `${QUESTION}
import socket
for i in range(6000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(question(i, 'x%d.refused.test' % i), ('198.51.%d.%d' % ((i >> 8) & 255, i & 255), 53))
    except OSError:
        pass
    s.close()
print('sent')`;
  assert.equal((await runTool(worker.tasks, greedy, 'run.python', { code })).stdout, 'sent\n');
  const flows = tracked();
  assert.ok(flows <= MAX_TRACKED_FLOWS + 100, `${flows} flows tracked after 6,000 questions from new ports to new addresses`);
  const fetched = await runTool(worker.tasks, bystander, 'run.python', {
    code: "import urllib.request\nprint(urllib.request.urlopen('http://api.test/', timeout=10).status)",
  });
  assert.equal(fetched.stdout, '200\n', fetched.stderr);
  await worker.sessions.destroySession({ sessionId: greedy });
  await worker.sessions.destroySession({ sessionId: bystander });
});

test(`one session's DNS questions are answered at most ${MAX_DNS_PER_SECOND} a second (after a burst of twice that)`, async () => {
  const asker = await session();
  const code = `${QUESTION}
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.connect(('198.51.100.53', 53))
started = time.monotonic()
for i in range(30000):
    try:
        s.send(question(i, 'flood.refused.test'))
    except OSError:
        pass
s.settimeout(1.0)
answered = 0
try:
    while True:
        s.recv(4096)
        answered += 1
except socket.timeout:
    pass
print(answered, time.monotonic() - started - 1.0)`;
  const [answered, seconds] = (await runTool(worker.tasks, asker, 'run.python', { code })).stdout!.trim().split(' ').map(Number);
  const most = 2 * MAX_DNS_PER_SECOND + MAX_DNS_PER_SECOND * (seconds! + 1) * 1.5;
  assert.ok(answered! <= most, `${answered} of 30,000 questions answered in ${seconds!.toFixed(2)} s (at most ${Math.round(most)})`);
  assert.ok(answered! > 0, 'some were answered');
  // Once the flood stops, the session resolves as before.
  const resolved = await runTool(worker.tasks, asker, 'run.python', { code: "import socket\nprint(socket.gethostbyname('api.test'))" });
  assert.equal(resolved.stdout, '203.0.113.10\n', resolved.stderr);
  await worker.sessions.destroySession({ sessionId: asker });
});

test(`the DNS gate's own questions upstream hold at most ${UPSTREAM_SOCKETS} flows, however many questions sessions ask`, async () => {
  const asker = await session();
  const upstreamFlows = () => trackedWhere((l) => l.includes(' udp ') && l.includes(` dst=${net.dnsServer} `) && l.includes(' dport=53 '));
  const before = upstreamFlows();
  // Allowed questions (the gate forwards each), 1,500 of them, paced under the session's rate.
  const code = `${QUESTION}
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5.0)
s.connect(('198.51.100.53', 53))
answered = 0
for burst in range(30):
    for i in range(50):
        s.send(question(burst * 50 + i, 'api.test'))
    for i in range(50):
        try:
            s.recv(4096)
            answered += 1
        except socket.timeout:
            break
print(answered)`;
  const answered = Number((await runTool(worker.tasks, asker, 'run.python', { code })).stdout);
  assert.ok(answered >= 1000, `${answered} of 1,500 answered`);
  const flows = upstreamFlows() - before;
  assert.ok(flows <= UPSTREAM_SOCKETS, `${flows} flows to the upstream resolver after ${answered} questions forwarded`);
  await worker.sessions.destroySession({ sessionId: asker });
});
