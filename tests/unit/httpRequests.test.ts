import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpRequestFramer, parseRequestHead, type Framed } from '../../src/sandbox/network/httpRequests.js';

const onlyApi = () => new HttpRequestFramer((name) => name === 'api.test');

/** What a framer lets go of `text`, fed whole and byte by byte (the two must agree). */
function frame(text: string, framer = onlyApi): string | { refused: string } {
  const results = [[Buffer.from(text, 'latin1')], [...Buffer.from(text, 'latin1')].map((b) => Buffer.from([b]))].map((chunks) => {
    const f = framer();
    let out = '';
    for (const chunk of chunks) {
      const framed: Framed = f.push(chunk);
      if ('refused' in framed) return { refused: framed.refused };
      out += Buffer.concat(framed.forward).toString('latin1');
    }
    return out;
  });
  const [whole, byByte] = results;
  assert.deepEqual(byByte, whole);
  return whole!;
}

test('heads: the host an absolute-form target or Host names; framing by Content-Length or chunked alone', () => {
  assert.deepEqual(parseRequestHead('GET http://Other.test:80/x HTTP/1.1'), { name: 'other.test', body: { kind: 'length', bytes: 0 }, switches: undefined });
  assert.deepEqual(parseRequestHead('GET http://a.test/ HTTP/1.1\r\nHost: b.test'), { malformed: 'a request line and Host naming different hosts' });
  assert.deepEqual(parseRequestHead('POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5, 5'), {
    name: 'api.test',
    body: { kind: 'length', bytes: 5 },
    switches: undefined,
  });
  for (const bad of [
    'GET / HTTP/1.1\r\nHost: api.test\r\nX: a\nHost: other.test', // a bare LF hiding a second Host
    'GET / HTTP/1.1\r\nHost : other.test',
    'GET / HTTP/1.1\r\nHost: api.test\r\n other.test',
    'POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked',
    'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked',
    'POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6',
    'GET / HTTP/2.0',
  ])
    assert.ok('malformed' in parseRequestHead(bad), bad);
  assert.equal((parseRequestHead('CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443') as { switches: unknown }).switches, 'connect');
});

test('every request of a kept-alive connection is judged by its own head, past its body', () => {
  const two = 'GET / HTTP/1.1\r\nHost: api.test\r\n\r\nPOST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc';
  assert.equal(frame(two), two);
  const chunked =
    'POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: api.test\r\n\r\n';
  assert.equal(frame(chunked), chunked);
  assert.equal(frame('GET / HTTP/1.1\r\nHost: api.test\r\n\r\nGET / HTTP/1.1\r\nHost: other'), 'GET / HTTP/1.1\r\nHost: api.test\r\n\r\n');
  for (const smuggled of [
    'GET / HTTP/1.1\r\nHost: api.test\r\n\r\nGET / HTTP/1.1\r\nHost: other.test\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\nHost: other.test\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabGET / HTTP/1.1\r\nHost: other.test\r\n\r\n',
    'GET http://other.test/ HTTP/1.1\r\n\r\n',
  ])
    assert.ok(typeof frame(smuggled) === 'object', smuggled);
  assert.deepEqual(frame('GET / HTTP/1.1\r\n' + 'X: y\r\n'.repeat(4000)), { refused: 'a request head too long' });
});

test('a switch of protocols: a tunnel after 101 (2xx to CONNECT), requests again after anything else', () => {
  const upgrade = 'GET / HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\n\r\n';
  const framer = onlyApi();
  assert.deepEqual(framer.push(Buffer.from(upgrade + 'GET / HTTP/1.1\r\nHost: other.test\r\n\r\n')), { forward: [Buffer.from(upgrade)] });
  assert.ok(framer.switching);
  assert.ok('refused' in framer.switchedBy('HTTP/1.1 200 OK'));
  const switched = onlyApi();
  switched.push(Buffer.from(upgrade + 'frames'));
  assert.equal(Buffer.concat((switched.switchedBy('HTTP/1.1 101 Switching Protocols') as { forward: Buffer[] }).forward).toString(), 'frames');
  const connect = onlyApi();
  connect.push(Buffer.from('CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n'));
  assert.ok(!('refused' in connect.switchedBy('HTTP/1.1 200 Connection established')));
  assert.deepEqual(connect.push(Buffer.from('anything')), { forward: [Buffer.from('anything')] });
  assert.ok(typeof frame('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n' + upgrade) === 'object', 'a switch only as the first request');
});
