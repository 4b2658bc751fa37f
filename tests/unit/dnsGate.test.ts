import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import winston from 'winston';
import { DnsGate, upstreamResolvers } from '../../src/sandbox/network/dnsGate.js';
import { ipv4Number } from '../../src/sandbox/network/ipv4.js';
import { SessionEgress } from '../../src/sandbox/network/sessionEgress.js';

const silent = winston.createLogger({ silent: true });

/** A resolver on loopback answering every A question with 203.0.113.10 (and an AAAA), counting questions. */
async function fakeUpstream() {
  const socket = createSocket('udp4');
  const asked: string[] = [];
  socket.on('message', (message, from) => {
    const query = dnsPacket.decode(message);
    const q = query.questions![0];
    assert.ok(q, 'a query asks a question');
    asked.push(`${q.type} ${q.name}`);
    const answers: dnsPacket.Answer[] = [
      { type: 'A', name: q.name, ttl: 60, data: '203.0.113.10' },
      { type: 'AAAA', name: q.name, ttl: 60, data: '2001:db8::1' },
    ];
    socket.send(
      dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: query.questions, answers }),
      from.port,
      from.address,
    );
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { socket, asked, address: `127.0.0.1:${socket.address().port}` };
}

const query = (name: string, type: dnsPacket.RecordType = 'A') =>
  dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });

test("the DNS gate answers a session's allowed names only, admits their addresses, and never gives IPv6", async (t) => {
  const upstream = await fakeUpstream();
  const refused: string[] = [];
  const session = new SessionEgress(
    's1',
    { mode: 'allow_list', allow: ['api.test'] },
    () => false,
    (kind) => refused.push(kind),
  );
  let gate: DnsGate | undefined;
  t.after(async () => {
    await gate?.close();
    upstream.socket.close();
  });
  gate = await DnsGate.start((from) => (from === '10.102.0.2' ? session : undefined), await upstreamResolvers([upstream.address]), silent);

  const allowed = dnsPacket.decode((await gate.answer(query('api.test'), '10.102.0.2'))!);
  assert.equal(allowed.id, 7);
  assert.deepEqual(
    allowed.answers?.map((a) => [a.type, 'data' in a ? a.data : undefined]),
    [['A', '203.0.113.10']],
  );
  assert.equal(session.verdict('203.0.113.10', 443, 'api.test').allowed, true, 'the answer admitted its address');

  const other = dnsPacket.decode((await gate.answer(query('other.test'), '10.102.0.2'))!);
  assert.equal((other.flags ?? 0) & 15, 3, 'NXDOMAIN');
  assert.deepEqual(refused, ['dns']);

  const v6 = dnsPacket.decode((await gate.answer(query('api.test', 'AAAA'), '10.102.0.2'))!);
  assert.deepEqual(v6.answers, []);
  assert.deepEqual(upstream.asked, ['A api.test'], 'only the allowed A question went upstream');

  assert.equal(await gate.answer(query('api.test'), '10.102.0.99'), undefined, 'no session there: no answer');
  assert.equal(await gate.answer(Buffer.from('not dns'), '10.102.0.2'), undefined);
  assert.ok(ipv4Number('203.0.113.10'));
});

test('resolver settings: addresses with and without ports', async () => {
  assert.deepEqual(await upstreamResolvers(['192.0.2.53', '192.0.2.54:5353', '[2001:db8::53]:53', '2001:db8::54']), [
    { address: '192.0.2.53', port: 53 },
    { address: '192.0.2.54', port: 5353 },
    { address: '2001:db8::53', port: 53 },
    { address: '2001:db8::54', port: 53 },
  ]);
});
