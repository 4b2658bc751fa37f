// The name an outbound connection presents in its first bytes: a TLS ClientHello's server_name
// (SNI) or an HTTP/1 request's host (httpRequests.ts). The egress proxy decides on it before any byte goes on.

import { MAX_HEAD_BYTES, parseRequestHead } from './httpRequests.js';

export type Presented =
  | { kind: 'more' } // not enough bytes yet to say
  | { kind: 'tls'; name: string | undefined }
  | { kind: 'http'; name: string | undefined }
  // TLS whose ClientHello cannot be read (malformed, or longer than MAX_PEEK_BYTES): it may
  // carry any name, so it is refused, never taken for a connection that presents none.
  | { kind: 'unreadable'; why: string }
  | { kind: 'other' };

/** The most a connection's first bytes are read for its name: one TLS record, or an HTTP head. */
export const MAX_PEEK_BYTES = MAX_HEAD_BYTES;

const HTTP_METHOD = /^[A-Z]{3,10} /;

export function presentedName(head: Buffer): Presented {
  if (head.length === 0) return { kind: 'more' };
  if (head[0] === 0x16) return tlsName(head);
  const text = head.subarray(0, Math.min(head.length, 16)).toString('latin1');
  if (HTTP_METHOD.test(text) || (head.length < 11 && /^[A-Z]+$/.test(text))) return httpHost(head);
  return { kind: 'other' };
}

function httpHost(head: Buffer): Presented {
  const end = head.indexOf('\r\n\r\n');
  if (end === -1) return head.length >= MAX_PEEK_BYTES ? { kind: 'http', name: undefined } : { kind: 'more' };
  if (!HTTP_METHOD.test(head.subarray(0, 16).toString('latin1'))) return { kind: 'other' };
  const parsed = parseRequestHead(head.subarray(0, end).toString('latin1'));
  return { kind: 'http', name: 'malformed' in parsed ? undefined : parsed.name };
}

/**
 * The ClientHello's SNI. The hello is one handshake message, which may be split across several
 * TLS records (RFC 8446 5.1: a client with a large hello does): their bodies are joined until
 * the whole message is there.
 */
function tlsName(head: Buffer): Presented {
  if (head.length < 5) return { kind: 'more' };
  if (head[1] !== 0x03) return { kind: 'other' };
  const more: Presented = head.length >= MAX_PEEK_BYTES ? { kind: 'unreadable', why: 'a ClientHello longer than the proxy reads' } : { kind: 'more' };
  const parts: Buffer[] = [];
  let joined = 0;
  for (let at = 0; ;) {
    if (head.length < at + 5) return more;
    if (head[at] !== 0x16 || head[at + 1] !== 0x03) return { kind: 'unreadable', why: 'a ClientHello split by a record that is not a handshake' };
    const length = head.readUInt16BE(at + 3);
    if (head.length < at + 5 + length) return more;
    parts.push(head.subarray(at + 5, at + 5 + length));
    joined += length;
    at += 5 + length;
    if (joined < 4) continue;
    const hello = Buffer.concat(parts);
    const messageLength = 4 + hello.readUIntBE(1, 3);
    if (joined < messageLength) continue;
    try {
      return { kind: 'tls', name: serverName(hello.subarray(0, messageLength)) };
    } catch {
      return { kind: 'unreadable', why: 'a malformed ClientHello' };
    }
  }
}

/** SNI host_name of a ClientHello handshake message (RFC 8446 4.1.2, RFC 6066 3); throws when truncated. */
function serverName(hello: Buffer): string | undefined {
  const need = (at: number, n: number) => {
    if (at + n > hello.length) throw new RangeError('truncated ClientHello');
  };
  need(0, 4);
  if (hello[0] !== 0x01) return undefined;
  let at = 4 + 2 + 32; // handshake header, legacy_version, random
  need(at, 1);
  at += 1 + hello.readUInt8(at); // session id
  need(at, 2);
  at += 2 + hello.readUInt16BE(at); // cipher suites
  need(at, 1);
  at += 1 + hello.readUInt8(at); // compression methods
  need(at, 2);
  const end = at + 2 + hello.readUInt16BE(at);
  at += 2;
  while (at + 4 <= end) {
    const type = hello.readUInt16BE(at);
    const length = hello.readUInt16BE(at + 2);
    at += 4;
    need(at, length);
    if (type === 0) {
      // server_name_list: a list of (name_type, name); host_name is type 0.
      let entry = at + 2;
      while (entry + 3 <= at + length) {
        const kind = hello[entry];
        const size = hello.readUInt16BE(entry + 1);
        need(entry + 3, size);
        if (kind === 0)
          return hello
            .subarray(entry + 3, entry + 3 + size)
            .toString('latin1')
            .toLowerCase();
        entry += 3 + size;
      }
      return undefined;
    }
    at += length;
  }
  return undefined;
}
