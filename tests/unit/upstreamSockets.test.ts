import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { once } from 'node:events';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { UPSTREAM_SOCKETS, UpstreamSockets } from '../../src/sandbox/network/upstreamSockets.js';

/** A resolver on loopback that passes each question it receives to `reply` (which may answer, or not). */
async function resolver(reply: (query: Buffer, from: RemoteInfo, send: (answer: Buffer) => void) => void, address = '127.0.0.1') {
  const socket = createSocket(address.includes(':') ? 'udp6' : 'udp4');
  const ports = new Set<number>();
  socket.on('message', (query, from) => {
    ports.add(from.port);
    reply(query, from, (answer) => socket.send(answer, from.port, from.address));
  });
  socket.bind(0, address);
  await once(socket, 'listening');
  return { socket, ports, upstream: { address, port: socket.address().port } };
}

const questionOf = (name: string) => dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });

/** The answer a resolver gives to `query`: its id and question, one A record. */
function answerTo(query: Buffer, data = '203.0.113.10'): Buffer {
  const asked = dnsPacket.decode(query);
  return dnsPacket.encode({
    type: 'response',
    id: asked.id,
    flags: 0,
    questions: asked.questions,
    answers: [{ type: 'A', name: asked.questions![0]!.name, ttl: 60, data }],
  });
}

test(`questions go out from at most ${UPSTREAM_SOCKETS} ports, each answered with its own answer`, async (t) => {
  const { socket, ports, upstream } = await resolver((query, _from, send) => send(answerTo(query)));
  const sockets = new UpstreamSockets();
  t.after(() => {
    sockets.close();
    socket.close();
  });
  const names = Array.from({ length: 500 }, (_, i) => `n${i}.test`);
  const answers: (Buffer | undefined)[] = [];
  // In rounds of 50: loopback drops datagrams past a socket's receive buffer.
  for (let i = 0; i < names.length; i += 50) {
    const round = names.slice(i, i + 50).map((name) => {
      const q = questionOf(name);
      return sockets.ask(q, q.length - 12, upstream, 5000);
    });
    answers.push(...(await Promise.all(round)));
  }
  assert.deepEqual(
    answers.map((a) => dnsPacket.decode(a!).questions![0]!.name),
    names,
  );
  assert.ok(ports.size <= UPSTREAM_SOCKETS, `${ports.size} ports`);
});

test('an answer with another id, another question, or from another address or port is not taken', async (t) => {
  const forger = createSocket('udp4');
  forger.bind(0, '127.0.0.1');
  await once(forger, 'listening');
  let forged = 0;
  const { socket, upstream } = await resolver((query, from, send) => {
    const forge = (answer: Buffer) => {
      forged++;
      forger.send(answer, from.port, from.address);
    };
    forge(answerTo(query, '198.51.100.66')); // the right id and question, from another port
    const otherId = answerTo(query, '198.51.100.66');
    otherId.writeUInt16BE((query.readUInt16BE(0) + 1) & 0xffff, 0);
    send(otherId);
    const other = dnsPacket.decode(query);
    send(answerTo(dnsPacket.encode({ ...other, questions: [{ type: 'A', name: 'other.test' }] }), '198.51.100.66'));
    setTimeout(() => send(answerTo(query)), 50);
  });
  const sockets = new UpstreamSockets();
  t.after(() => {
    sockets.close();
    socket.close();
    forger.close();
  });
  const q = questionOf('api.test');
  const answer = dnsPacket.decode((await sockets.ask(q, q.length - 12, upstream, 5000))!);
  assert.equal(forged, 1);
  assert.deepEqual(
    answer.answers?.map((a) => 'data' in a && a.data),
    ['203.0.113.10'],
  );
});

test('a question no one answers resolves undefined after its timeout, and its id is free again', async (t) => {
  const { socket, upstream } = await resolver(() => undefined);
  const sockets = new UpstreamSockets();
  t.after(() => {
    sockets.close();
    socket.close();
  });
  const q = questionOf('silent.test');
  assert.equal(await sockets.ask(q, q.length - 12, upstream, 20), undefined);
});

test('an upstream written in another spelling of its address is heard (IPv6 zeros written out, upper case)', async (t) => {
  const { socket, upstream } = await resolver((query, _from, send) => send(answerTo(query)), '::1');
  const sockets = new UpstreamSockets();
  t.after(() => {
    sockets.close();
    socket.close();
  });
  for (const address of ['::1', '0:0:0:0:0:0:0:1', '0000:0000::0001']) {
    const q = questionOf('api.test');
    const answer = await sockets.ask(q, q.length - 12, { address, port: upstream.port }, 5000);
    assert.ok(answer, `answered when written ${address}`);
  }
});
