import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { MAX_PEEK_BYTES, presentedName } from '../../src/sandbox/network/presentedName.js';

/** The first bytes a real TLS client sends (Node's own ClientHello), captured on loopback. */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d: Buffer) => (resolve(d), s.destroy()))));
  const socket = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, rejectUnauthorized: false });
  socket.on('error', () => undefined);
  const hello = await got;
  socket.destroy();
  server.close();
  return hello;
}

test("TLS: the ClientHello's server_name, whole or in pieces", async () => {
  const hello = await clientHello('API.test');
  assert.deepEqual(presentedName(hello), { kind: 'tls', name: 'api.test' });
  for (const cut of [1, 3, 5, 40, hello.length - 1]) assert.deepEqual(presentedName(hello.subarray(0, cut)), { kind: 'more' }, `cut at ${cut}`);
});

test('TLS without SNI (an IP literal) presents no name', async () => {
  assert.deepEqual(presentedName(await clientHello(undefined)), { kind: 'tls', name: undefined });
});

test('TLS: a lying record (lengths past its end) waits for more, then is unreadable; never throws', () => {
  const bogus = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0xff, 0x03, 0x03, 0x00, 0x00]);
  assert.deepEqual(presentedName(bogus), { kind: 'more' });
  assert.equal(presentedName(Buffer.alloc(MAX_PEEK_BYTES, 0x16).fill(0x03, 1, 2)).kind, 'unreadable');
  const garbled = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03]);
  assert.equal(presentedName(garbled).kind, 'unreadable', 'a whole hello that does not parse');
});

/** `hello` (one record) as two records, its handshake message cut after `cut` bytes. */
function inTwoRecords(hello: Buffer, cut: number, second = 0x16): Buffer {
  const body = hello.subarray(5);
  const record = (type: number, part: Buffer) => Buffer.concat([Buffer.from([type, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part]);
  return Buffer.concat([record(0x16, body.subarray(0, cut)), record(second, body.subarray(cut))]);
}

test('TLS: a ClientHello split across records is read whole; one split by another kind of record is unreadable', async () => {
  const hello = await clientHello('api.test');
  for (const cut of [1, 3, 4, 60, hello.length - 6]) {
    const split = inTwoRecords(hello, cut);
    assert.deepEqual(presentedName(split), { kind: 'tls', name: 'api.test' }, `cut at ${cut}`);
    assert.deepEqual(presentedName(split.subarray(0, split.length - 1)), { kind: 'more' }, `cut at ${cut}, its last byte not yet come`);
  }
  assert.equal(presentedName(inTwoRecords(hello, 60, 0x17)).kind, 'unreadable');
});

test("HTTP: the request's one Host header, port dropped; two Host headers name nothing", () => {
  const head = (lines: string[]) => Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  assert.deepEqual(presentedName(head(['GET / HTTP/1.1', 'Host: API.test:8080', 'Accept: */*'])), { kind: 'http', name: 'api.test' });
  assert.deepEqual(presentedName(head(['POST /x HTTP/1.1', 'host:api.test'])), { kind: 'http', name: 'api.test' });
  assert.deepEqual(presentedName(head(['GET / HTTP/1.1', 'Host: a.test', 'Host: b.test'])), { kind: 'http', name: undefined });
  assert.deepEqual(presentedName(head(['GET / HTTP/1.0'])), { kind: 'http', name: undefined });
  assert.deepEqual(presentedName(Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n')), { kind: 'more' });
  assert.deepEqual(presentedName(Buffer.from('GE')), { kind: 'more' });
});

test('anything else presents no name', () => {
  assert.deepEqual(presentedName(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')), { kind: 'other' });
  assert.deepEqual(presentedName(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])), { kind: 'other' });
});
