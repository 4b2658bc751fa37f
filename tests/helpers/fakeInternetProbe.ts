// One probe from inside a fake internet's worker namespace (fakeInternet.ts runs it there with
// `ip netns exec`): a DNS lookup, an HTTP(S) GET, a TLS handshake or a TCP connection. Prints one
// JSON ProbeResult and exits 0 whatever came of it; a probe never waits past 5 s.
//
//   node fakeInternetProbe.js '<json ProbeRequest>'
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ProbeRequest, ProbeResult } from './fakeInternet.js';

const LIMIT_MS = 5000;
const request = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest & { ca: string; server: string };
const started = performance.now();

async function attempt(): Promise<Omit<ProbeResult, 'ms'>> {
  switch (request.kind) {
    case 'resolve': {
      const resolver = new Resolver({ timeout: 1000, tries: 1 });
      resolver.setServers([request.server]);
      // node's c-ares falls back to TCP only for truncated answers; `tcp` asks over TCP first.
      if (request.tcp) return { ok: true, addresses: await resolveOverTcp(request.server, request.name, request.type ?? 'A') };
      return { ok: true, addresses: request.type === 'AAAA' ? await resolver.resolve6(request.name) : await resolver.resolve4(request.name) };
    }
    case 'http':
      return get(request.url, request.address, request.ca);
    case 'tls':
      return new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: request.address, port: request.port, servername: request.servername, ca: readFileSync(request.ca) }, () => {
          const altNames = socket.getPeerCertificate().subjectaltname;
          socket.end();
          resolve({ ok: true, altNames });
        });
        socket.once('error', reject);
      });
    case 'tcp':
      return new Promise((resolve, reject) => {
        const socket = netConnect({ host: request.address, port: request.port }, () => {
          if (!request.read) return void (socket.end(), resolve({ ok: true }));
          let line = '';
          socket.on('data', (chunk: Buffer) => {
            line += chunk.toString();
            if (!line.includes('\n')) return;
            resolve({ ok: true, line: line.split('\n')[0] });
            socket.destroy();
          });
        });
        socket.once('error', reject);
      });
  }
}

function get(url: string, address: string | undefined, ca: string): Promise<Omit<ProbeResult, 'ms'>> {
  const parsed = new URL(url);
  const secure = parsed.protocol === 'https:';
  // Connecting to `address` keeps the URL's host for Host and SNI, as a client with its own resolver would.
  const lookup = address
    ? (_host: string, options: { all?: boolean }, done: (e: null, a: string | { address: string; family: number }[], f?: number) => void) =>
        options.all ? done(null, [{ address, family: 4 }]) : done(null, address, 4)
    : undefined;
  return new Promise((resolve, reject) => {
    const options = { lookup, ...(secure ? { ca: readFileSync(ca), agent: false } : { agent: false }) };
    const made = (secure ? httpsRequest : httpRequest)(url, options as never, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ ok: true, status: response.statusCode, body: JSON.parse(text) as Record<string, unknown> }));
    });
    made.once('error', reject);
    made.end();
  });
}

async function resolveOverTcp(server: string, name: string, type: 'A' | 'AAAA'): Promise<string[]> {
  const dnsPacket = await import('dns-packet');
  const query = dnsPacket.streamEncode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: server, port: 53 }, () => socket.write(query));
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
      const answer = dnsPacket.streamDecode(buffered);
      socket.destroy();
      if ((answer as { rcode?: string }).rcode === 'NXDOMAIN') return reject(Object.assign(new Error('NXDOMAIN'), { code: 'ENOTFOUND' }));
      const found = (answer.answers ?? []).filter((a) => a.type === type).map((a) => (a as { data: string }).data);
      if (found.length === 0) return reject(Object.assign(new Error('no data'), { code: 'ENODATA' }));
      resolve(found);
    });
    socket.once('error', reject);
  });
}

const limit = new Promise<never>((_resolve, reject) =>
  setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), LIMIT_MS).unref(),
);
const result = await Promise.race([attempt(), limit]).catch((error: NodeJS.ErrnoException) => ({ ok: false, error: error.code ?? error.message }));
process.stdout.write(`${JSON.stringify({ ...result, ms: Math.round(performance.now() - started) })}\n`);
process.exit(0);
