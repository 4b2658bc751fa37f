import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import { makeFakeInternet, type FakeInternet } from '../helpers/fakeInternet.js';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The promise: a session's DNS reaches the worker's resolvers only as questions about names its
// policy allows. The gate checked a message's first question but sent the session's own bytes
// upstream: any opcode (a dynamic UPDATE of the zone, a NOTIFY), and whatever records the
// session put after the question, reached the worker's resolver from the worker's address.
const API = '203.0.113.10';

let net: FakeInternet;
let worker: RunningWorker;

before(async () => {
  net = await makeFakeInternet({ names: { 'api.test': API } });
  worker = await startWorker({ namespace: net, env: { WORKER_DNS_SERVERS: net.dnsServer, WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => {
  await worker?.stop();
  await net?.close();
});

/** Python sending one hand-made DNS message for api.test to any address's port 53 (the gate gets it) and printing the reply's rcode. */
const SEND = String.raw`
import socket, struct, sys
opcode, extra = int(sys.argv[1]), sys.argv[2] == 'extra'
name = b''.join(bytes([len(l)]) + l for l in b'api.test'.split(b'.')) + b'\0'
record = name + struct.pack('>HHIH', 1, 1, 60, 4) + socket.inet_aton('10.0.0.1')
header = struct.pack('>HHHHHH', 0x1234, (opcode << 11) | 0x0100, 1, 0, 1 if extra else 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(header + name + struct.pack('>HH', 6 if opcode == 5 else 1, 1) + (record if extra else b''), ('198.51.100.53', 53))
try:
    print(s.recv(4096)[3] & 15)
except Exception as e:
    print(type(e).__name__)
`;

test("a session's DNS reaches the worker's resolver only as a plain question", async () => {
  const { sessionId } = await worker.sessions.createSession({
    workspaceId: 'net',
    config: { network: { mode: NetworkMode.NETWORK_MODE_ALLOW_LIST, allow: ['api.test'] } },
  });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'send.py', contents: SEND });
  const before = (await net.dnsQueries()).length;
  const update = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'python3 send.py 5 extra; python3 send.py 0 extra; python3 send.py 0 plain' });
  const upstream = (await net.dnsQueries()).slice(before);
  assert.ok(
    upstream.every((q) => q.opcode === 'QUERY' && q.records <= 1), // at most the gate's own EDNS record
    JSON.stringify(upstream),
  );
  const [updateRcode, extraRcode, plainRcode] = update.stdout!.trim().split('\n');
  assert.equal(updateRcode, '4', 'an UPDATE is NOTIMP'); // dns rcode 4: not implemented
  assert.equal(extraRcode, '0');
  assert.equal(plainRcode, '0');
});
