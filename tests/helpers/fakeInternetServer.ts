// The fake internet's servers, run by fakeInternet.ts inside its "world" network namespace: a DNS
// server (UDP and TCP) and, on every served address and port, one listener that tells TLS, HTTP
// and silent raw TCP clients apart by their first bytes. Its control channel is stdin/stdout, one
// JSON object a line: it prints {"ready":true} once everything listens, answers {"id","op":"hits"}
// with {"id","hits","queries"}, and exits when stdin closes (its parent gone).
//
//   node fakeInternetServer.js '<json ServerConfig>'
import { createSocket, type RemoteInfo } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { createSecureContext, TLSSocket } from 'node:tls';
import * as dnsPacket from 'dns-packet';

export interface ServerConfig {
  /** Addresses served on every port. */
  addresses: string[];
  ports: number[];
  dnsServer: string;
  /** lower-case name -> IPv4 */
  names: Record<string, string>;
  certFile: string;
  keyFile: string;
}

export interface Hit {
  /** The served address the client connected to. */
  address: string;
  port: number;
  protocol: 'http' | 'tls' | 'tcp';
  /** TLS: the SNI (if the client sent one); HTTP: the Host header without its port. */
  name?: string;
  /** TLS: the server name the client asked for. */
  sni?: string;
  /** HTTP and HTTP over TLS: the Host header as sent. */
  host?: string;
  method?: string;
  path?: string;
  /** The client's address as the fake internet saw it (the worker namespace's address, after any NAT). */
  from: string;
}

export interface DnsQuery {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
  from: string;
  answer: 'A' | 'NODATA' | 'NXDOMAIN';
  /** The message's opcode (QUERY, UPDATE, NOTIFY, ...) and its records past the question (answer, authority, additional sections). */
  opcode: string;
  records: number;
}

/** How long a client may stay silent before a raw TCP greeting. */
const SILENCE_MS = 200;

const config = JSON.parse(process.argv[2] ?? '{}') as ServerConfig;
const hits: Hit[] = [];
const queries: DnsQuery[] = [];
const credentials = { cert: readFileSync(config.certFile), key: readFileSync(config.keyFile) };

function answerDns(query: Buffer, transport: 'udp' | 'tcp', from: string): Buffer | undefined {
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(query);
  } catch {
    return undefined;
  }
  const question = packet.questions?.[0];
  if (!question || packet.type !== 'query') return undefined;
  const name = question.name.toLowerCase().replace(/\.$/, '');
  const address = Object.hasOwn(config.names, name) ? config.names[name] : undefined;
  const answer = address === undefined ? 'NXDOMAIN' : question.type === 'A' ? 'A' : 'NODATA';
  const records = (packet.answers?.length ?? 0) + (packet.authorities?.length ?? 0) + (packet.additionals?.length ?? 0);
  queries.push({ name, type: question.type, transport, from, answer, opcode: (packet as { opcode?: string }).opcode ?? 'QUERY', records });
  return dnsPacket.encode({
    id: packet.id,
    type: 'response',
    // dns-packet encodes the response code from the flags' low four bits only (NXDOMAIN: 3).
    flags:
      dnsPacket.AUTHORITATIVE_ANSWER | ((packet.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | dnsPacket.RECURSION_AVAILABLE | (answer === 'NXDOMAIN' ? 3 : 0),
    questions: [question],
    answers: answer === 'A' ? [{ type: 'A', class: 'IN', name: question.name, ttl: 5, data: address! }] : [],
  } as dnsPacket.Packet);
}

async function serveDns(): Promise<void> {
  const udp = createSocket('udp4');
  udp.on('message', (message: Buffer, remote: RemoteInfo) => {
    const reply = answerDns(message, 'udp', remote.address);
    if (reply) udp.send(reply, remote.port, remote.address);
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(53, config.dnsServer, () => resolve());
  });
  // TCP: each message framed by its two-byte length, as many as the client sends.
  const tcp = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const reply = answerDns(buffered.subarray(2, 2 + buffered.readUInt16BE(0)), 'tcp', socket.remoteAddress ?? '');
        buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
        if (!reply) return void socket.destroy();
        const length = Buffer.alloc(2);
        length.writeUInt16BE(reply.length);
        socket.write(Buffer.concat([length, reply]));
      }
    });
  });
  await listen(tcp, 53, config.dnsServer);
}

/**
 * Like a virtual-hosting server (RFC 9112 3.2.2): an absolute-form target's host wins over the
 * Host header, and every request of a kept-alive connection is routed (and recorded) on its own.
 */
function reply(request: IncomingMessage, response: ServerResponse, first: Hit): void {
  let hit = first;
  if (hit.method !== undefined) hits.push((hit = { ...first, name: first.protocol === 'tls' ? first.sni : undefined }));
  hit.host = request.headers.host;
  hit.method = request.method;
  hit.path = request.url;
  const absolute = /^https?:\/\/([^/:?#]+)/i.exec(request.url ?? '')?.[1];
  if (hit.protocol === 'http') hit.name = absolute ?? request.headers.host?.replace(/:\d+$/, '');
  const body = JSON.stringify({ served_by: hit.address, port: hit.port, name: hit.name, protocol: hit.protocol, path: hit.path, sni: hit.sni, host: hit.host });
  // Kept alive only for an HTTP/1.1 client that does not say (every test client says close or keep-alive).
  const close = request.httpVersion !== '1.1' || request.headers.connection !== undefined;
  response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(`${body}\n`), connection: close ? 'close' : 'keep-alive' });
  response.end(`${body}\n`);
}

// One HTTP server parses every connection, plain or TLS; the accepting listener hands it each.
const connectionHits = new WeakMap<Socket | TLSSocket, Hit>();
const http = createHttpServer((request, response) => reply(request, response, connectionHits.get(request.socket)!));
http.on('clientError', (_error, socket) => socket.destroy());
const secureContext = createSecureContext(credentials);

function accept(socket: Socket, address: string, port: number): void {
  socket.on('error', () => socket.destroy());
  const hit = (protocol: Hit['protocol']): Hit => {
    const made: Hit = { address, port, protocol, from: socket.remoteAddress ?? '' };
    hits.push(made);
    connectionHits.set(socket, made);
    return made;
  };
  const greet = () => {
    hit('tcp');
    socket.write(`hello from ${address}:${port}\n`);
    socket.on('data', (data) => socket.write(data)); // then an echo
  };
  const silence = setTimeout(greet, SILENCE_MS);
  socket.once('data', (first: Buffer) => {
    clearTimeout(silence);
    if (connectionHits.has(socket)) return; // greeted already: the echo has it
    socket.pause();
    socket.unshift(first);
    if (first[0] === 0x16) {
      const made = hit('tls');
      const tls = new TLSSocket(socket, {
        isServer: true,
        secureContext,
        ALPNProtocols: ['http/1.1'],
        // Named at the ClientHello: a client that then refuses the certificate was still seen.
        SNICallback: (name, done) => {
          made.sni = made.name = name;
          done(null, secureContext);
        },
      });
      connectionHits.set(tls, made);
      tls.on('error', () => tls.destroy());
      tls.once('secure', () => http.emit('connection', tls));
    } else if (/^[A-Z]{1,16}( |$)/.test(first.subarray(0, 17).toString('latin1'))) {
      hit('http');
      http.emit('connection', socket);
      socket.resume();
    } else {
      socket.resume();
      greet();
    }
  });
}

function listen(server: Server, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve());
  });
}

async function main(): Promise<void> {
  await serveDns();
  for (const address of config.addresses)
    for (const port of config.ports) {
      await listen(
        createServer((socket) => accept(socket, address, port)),
        port,
        address,
      );
    }
  const control = createInterface({ input: process.stdin });
  control.on('line', (line) => {
    const request = JSON.parse(line) as { id: number; op: string };
    if (request.op === 'hits') process.stdout.write(`${JSON.stringify({ id: request.id, hits, queries })}\n`);
  });
  control.on('close', () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`fake internet: ${String(error)}\n`);
  process.exit(1);
});
