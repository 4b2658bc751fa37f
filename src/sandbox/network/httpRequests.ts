// The requests of a plain-HTTP connection the egress proxy lets through by name. A server routes
// each request of a kept-alive or pipelined connection by its own head, and an absolute-form
// target over its Host (RFC 9112 3.2.2): so every head is read, framed by its body, and checked
// before any of its bytes go on; one the framing cannot follow ends the connection.

/** The most a request head (or a chunk-size or trailer line) may take. */
export const MAX_HEAD_BYTES = 5 + 16_384;
const MAX_LINE_BYTES = 4_096;

const REQUEST_LINE = /^([A-Z]{1,16}) (\S+) HTTP\/1\.([01])$/;
const FIELD = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;

export type RequestHead =
  | { malformed: string }
  | {
      /** The host it names (absolute-form target, else Host), lower case, without its port; undefined for none. */
      name: string | undefined;
      body: { kind: 'length'; bytes: number } | { kind: 'chunked' };
      /** CONNECT, or an Upgrade header: the server may switch protocols after it. */
      switches: 'connect' | 'upgrade' | undefined;
    };

/** One request head, without its final empty line. */
export function parseRequestHead(head: string): RequestHead {
  const [requestLine = '', ...lines] = head.split(/\r?\n/);
  const [, method, requestTarget] = REQUEST_LINE.exec(requestLine) ?? [];
  if (method === undefined || requestTarget === undefined) return { malformed: 'not an HTTP/1 request line' };
  const fields = new Map<string, string[]>();
  for (const line of lines) {
    // A bare CR, a folded line, a space before the colon: servers differ on them, so none pass.
    const [, name, value] = FIELD.exec(line) ?? [];
    if (name === undefined || value === undefined || line.includes('\r')) return { malformed: 'a header line servers may read differently' };
    const key = name.toLowerCase();
    fields.set(key, [...(fields.get(key) ?? []), value]);
  }
  const hosts = fields.get('host') ?? [];
  // Two Host headers: which one the server believes is its own affair; the request names neither.
  if (hosts.length > 1) return { malformed: 'two Host headers' };
  const [hostField] = hosts;
  const [, authority] = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(requestTarget) ?? [];
  const target = authority === undefined ? undefined : hostOf(authority);
  const host = hostField === undefined ? undefined : hostOf(hostField);
  if (authority !== undefined && hostField !== undefined && target !== host) return { malformed: 'a request line and Host naming different hosts' };
  const codings = fields.get('transfer-encoding');
  const lengths = fields.get('content-length');
  let body: { kind: 'length'; bytes: number } | { kind: 'chunked' } = { kind: 'length', bytes: 0 };
  if (codings) {
    if (lengths || codings.join(',').trim().toLowerCase() !== 'chunked') return { malformed: 'a body framing other than chunked alone' };
    body = { kind: 'chunked' };
  } else if (lengths) {
    const values = new Set(lengths.flatMap((v) => v.split(',')).map((v) => v.trim()));
    const [value] = values;
    if (value === undefined || values.size !== 1 || !/^\d{1,15}$/.test(value)) return { malformed: 'a Content-Length that is not one number' };
    body = { kind: 'length', bytes: Number(value) };
  }
  return { name: target ?? host, body, switches: method === 'CONNECT' ? 'connect' : fields.has('upgrade') ? 'upgrade' : undefined };
}

/** `host[:port]` → the host, lower case; undefined for none or an IPv6 literal. */
function hostOf(authority: string): string | undefined {
  const host = authority
    .replace(/^[^@]*@/, '')
    .replace(/:\d*$/, '')
    .toLowerCase();
  return host.length > 0 && !host.startsWith('[') ? host : undefined;
}

type State =
  | { kind: 'head' }
  | { kind: 'body'; left: number; then: 'head' | 'chunk-end' }
  | { kind: 'chunk-size' }
  | { kind: 'chunk-end' }
  | { kind: 'trailers' }
  | { kind: 'switching'; connect: boolean } // a request that may switch protocols went: held until the server answers
  | { kind: 'tunnel' };

export type Framed = { forward: Buffer[] } | { refused: string };

/** Follows one connection's requests through its bytes, asking `allowed` about each head's name. */
export class HttpRequestFramer {
  private state: State = { kind: 'head' };
  private held: Buffer = Buffer.alloc(0);
  private requests = 0;

  constructor(private readonly allowed: (name: string | undefined) => boolean) {}

  /** Whether the framer waits for the server's status line (switchedBy decides). */
  get switching(): boolean {
    return this.state.kind === 'switching';
  }

  /** The bytes of `chunk` (after what was held) that may go on now; the rest is held until it can be judged. */
  push(chunk: Buffer): Framed {
    const data = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = Buffer.alloc(0);
    const forward: Buffer[] = [];
    let at = 0;
    while (at < data.length) {
      const state = this.state;
      if (state.kind === 'tunnel') {
        forward.push(data.subarray(at));
        at = data.length;
      } else if (state.kind === 'switching') {
        if (data.length - at > MAX_HEAD_BYTES) return { refused: 'too much sent before the server switched protocols' };
        break;
      } else if (state.kind === 'body') {
        const n = Math.min(state.left, data.length - at);
        forward.push(data.subarray(at, at + n));
        at += n;
        this.state = state.left === n ? { kind: state.then } : { ...state, left: state.left - n };
      } else if (state.kind === 'head') {
        if (data[at] === 0x0d || data[at] === 0x0a) {
          // Empty lines before a request line (RFC 9112 2.2): passed on as they are.
          const start = at;
          while (at < data.length && (data[at] === 0x0d || data[at] === 0x0a)) at++;
          forward.push(data.subarray(start, at));
          continue;
        }
        const end = data.indexOf('\r\n\r\n', at);
        if (end === -1) {
          if (data.length - at >= MAX_HEAD_BYTES) return { refused: 'a request head too long' };
          break;
        }
        const head = parseRequestHead(data.subarray(at, end).toString('latin1'));
        if ('malformed' in head) return { refused: head.malformed };
        if (!this.allowed(head.name)) return { refused: 'a request naming a host the policy does not allow' };
        this.requests++;
        if (head.switches && (this.requests > 1 || head.body.kind !== 'length' || head.body.bytes > 0))
          return { refused: 'a request switching protocols that is not its connection’s only one' };
        forward.push(data.subarray(at, end + 4));
        at = end + 4;
        if (head.switches) this.state = { kind: 'switching', connect: head.switches === 'connect' };
        else if (head.body.kind === 'chunked') this.state = { kind: 'chunk-size' };
        else if (head.body.bytes > 0) this.state = { kind: 'body', left: head.body.bytes, then: 'head' };
      } else {
        const end = data.indexOf('\r\n', at);
        if (end === -1) {
          if (data.length - at >= MAX_LINE_BYTES) return { refused: 'a chunk line too long' };
          break;
        }
        const line = data.subarray(at, end).toString('latin1');
        if (state.kind === 'chunk-size') {
          const [, size] = /^([0-9a-fA-F]{1,12})(?:[ \t]*;[^\r\n]*)?$/.exec(line) ?? [];
          if (size === undefined) return { refused: 'a malformed chunk size' };
          const bytes = parseInt(size, 16);
          this.state = bytes === 0 ? { kind: 'trailers' } : { kind: 'body', left: bytes, then: 'chunk-end' };
        } else if (state.kind === 'chunk-end') {
          if (line !== '') return { refused: 'a chunk longer than its size' };
          this.state = { kind: 'chunk-size' };
        } else if (line === '') {
          this.state = { kind: 'head' };
        } else if (!FIELD.test(line)) {
          return { refused: 'a malformed trailer' };
        }
        forward.push(data.subarray(at, end + 2));
        at = end + 2;
      }
    }
    this.held = Buffer.from(data.subarray(at));
    return { forward };
  }

  /**
   * The server's first status line, after a request that may switch protocols: a switch (101 to
   * an Upgrade, 2xx to CONNECT) makes the rest a tunnel; anything else goes on as requests.
   * Returns what was held.
   */
  switchedBy(statusLine: string): Framed {
    const connect = this.state.kind === 'switching' && this.state.connect;
    this.state = (connect ? /^HTTP\/1\.[01] 2\d\d / : /^HTTP\/1\.[01] 101 /).test(statusLine) ? { kind: 'tunnel' } : { kind: 'head' };
    return this.push(Buffer.alloc(0));
  }
}
