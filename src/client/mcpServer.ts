import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { McpConnection, type OnClose } from './mcpTools.js';
import type { CodegenWorker } from './session.js';
import { WORKER_VERSION } from '../version.js';

/**
 * `codegen-worker mcp`: the worker's sessions as a Model Context Protocol server (the tools are
 * mcpTools.ts's), over stdio (one connection: the process's stdin and stdout) or Streamable HTTP
 * (`--http host:port`, path /mcp; each MCP session a connection of its own). A connection's
 * sessions are destroyed, checkpointed or kept when it closes (`onClose`).
 */

export interface McpServeOptions {
  worker: CodegenWorker;
  onClose: OnClose;
  /** Where the server says what it does (stderr: stdout is the protocol's under stdio). */
  log: (line: string) => void;
  /** HTTP: an MCP session with no request in flight and no stream open this long is closed (its client is gone). */
  idleSeconds?: number;
}

function newServer(connection: McpConnection): McpServer {
  const server = new McpServer(
    { name: 'codegen-worker', version: WORKER_VERSION },
    {
      capabilities: { logging: {} },
      instructions:
        'Isolated sessions of a CodeGen-MCP worker: run code and shell commands, read and write files, install packages, ' +
        "checkpoint and restore. Tools act on this connection's own session unless given a session_id.",
    },
  );
  connection.register(server);
  return server;
}

/** Serves one connection on stdin and stdout until stdin ends; its sessions then go as `onClose` says. */
export async function serveStdio(options: McpServeOptions): Promise<void> {
  const connection = new McpConnection(options.worker, options.log);
  const server = newServer(connection);
  // Ended by the client closing our stdin, or stopped (SIGTERM: the SDK's client sends one when we are slow to go).
  // Or by our stdout failing (EPIPE: the client's reading end is gone), or by the SDK's transport
  // closing itself (a message larger than its read buffer): it reads stdin no more, so 'end' would never come.
  let end = () => {};
  const ended = new Promise<void>((resolve) => {
    end = resolve;
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
    process.stdout.on('error', () => resolve());
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, resolve);
  });
  server.server.onclose = () => end();
  await server.connect(new StdioServerTransport());
  await ended;
  await connection.close(options.onClose);
  await server.close();
  process.stdin.destroy();
}

/**
 * Serves MCP over Streamable HTTP on `host:port` at /mcp until `signal` aborts. It has no
 * authentication of its own (whoever reaches it acts with the worker's token), so it listens on
 * loopback only; requests whose Host is not this address, or that come from another origin's web
 * page, are refused (a page the user visits must not reach it through a DNS name it controls).
 */
export async function serveHttp(host: string, port: number, options: McpServeOptions, signal: AbortSignal): Promise<{ port: number; closed: Promise<void> }> {
  if (!isLoopback(host))
    throw new Error(
      `--http: ${host} is not a loopback address; the MCP server has no authentication of its own, so it listens on loopback only (127.0.0.1, ::1, localhost)`,
    );
  const connections = new Map<string, { transport: StreamableHTTPServerTransport; connection: McpConnection; active: number; idle?: NodeJS.Timeout }>();
  const idleMs = (options.idleSeconds ?? 900) * 1000;
  let listening = port;
  const closeSession = async (id: string) => {
    const open = connections.get(id);
    if (!open) return;
    connections.delete(id);
    clearTimeout(open.idle);
    await open.connection.close(options.onClose);
    await open.transport.close().catch(() => undefined);
  };
  // A client that simply goes away sends no DELETE: its session ends after idleMs with nothing in
  // flight (an SDK client holds a GET stream open while it lives, so only a gone one is idle).
  const track = (id: string, res: ServerResponse) => {
    const open = connections.get(id);
    if (!open) return;
    open.active++;
    clearTimeout(open.idle);
    res.once('close', () => {
      if (--open.active > 0 || connections.get(id) !== open) return;
      open.idle = setTimeout(() => {
        options.log(`mcp http: session ${id} idle for ${idleMs / 1000} s: closed`);
        void closeSession(id);
      }, idleMs);
    });
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/mcp') return reply(res, 404, 'not found: the MCP endpoint is /mcp');
    const id = req.headers['mcp-session-id'];
    const open = typeof id === 'string' ? connections.get(id) : undefined;
    if (open) {
      track(id as string, res);
      return open.transport.handleRequest(req, res);
    }
    if (req.method !== 'POST')
      return reply(res, typeof id === 'string' ? 404 : 400, typeof id === 'string' ? 'no such MCP session' : 'no MCP session: initialize first');
    const body = await readJson(req).catch(() => undefined);
    if (body === undefined || !isInitializeRequest(body))
      return reply(res, typeof id === 'string' ? 404 : 400, typeof id === 'string' ? 'no such MCP session' : 'no MCP session: initialize first');
    const connection = new McpConnection(options.worker, options.log);
    const hosts = [...new Set([host.includes(':') ? `[${host}]` : host, 'localhost', '127.0.0.1', '[::1]'])].map((h) => `${h}:${listening}`);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableDnsRebindingProtection: true,
      allowedHosts: hosts,
      allowedOrigins: hosts.map((h) => `http://${h}`),
      onsessioninitialized: (sessionId) => {
        connections.set(sessionId, { transport, connection, active: 0 });
        track(sessionId, res);
      },
      onsessionclosed: (sessionId) => closeSession(sessionId),
    });
    transport.onclose = () => {
      if (transport.sessionId) void closeSession(transport.sessionId);
    };
    await newServer(connection).connect(transport);
    await transport.handleRequest(req, res, body);
  };
  const http = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      options.log(`mcp http: ${err.message}`);
      if (!res.headersSent) reply(res, 500, 'internal error');
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => resolve());
  });
  const address = http.address();
  listening = typeof address === 'object' && address ? address.port : port;
  const closed = new Promise<void>((resolve) => {
    const stop = async () => {
      http.close();
      http.closeAllConnections();
      await Promise.all([...connections.keys()].map((id) => closeSession(id)));
      resolve();
    };
    if (signal.aborted) void stop();
    else signal.addEventListener('abort', () => void stop(), { once: true });
  });
  return { port: listening, closed };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

/** The request's JSON body (at most 4 MiB: an initialize request is small). */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 4 * 1024 * 1024) throw new Error('too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}
