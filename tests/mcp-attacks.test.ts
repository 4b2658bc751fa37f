import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, test, type TestContext } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Status } from 'nice-grpc';
import { statusOf, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// `codegen-worker mcp` attacked from its less trusted sides: an MCP client that is killed, goes
// away mid-call, sends a message too large for the stdio transport, or vanishes from HTTP; and a
// client that destroys its own default session by id. Each leaves no session behind, and no hang.

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
let worker: RunningWorker;

before(async () => {
  worker = await startWorker();
});
after(async () => {
  await worker?.stop();
});

/** The worker's sessions an MCP connection made (workspace 'mcp'): this file's tests run one at a time. */
const mcpSessions = async () => (await worker.sessions.getCapacity({})).sessions.filter((s) => s.workspaceId === 'mcp').map((s) => s.sessionId);
const noMcpSessions = async () => (await mcpSessions()).length === 0;
/** What a failing test left behind goes with it: the next test counts from none. */
const sweep = (t: TestContext) =>
  t.after(async () => {
    for (const sessionId of await mcpSessions()) await worker.sessions.destroySession({ sessionId }).catch(() => undefined);
  });

/** `codegen-worker mcp` on pipes this test drives by hand (JSON lines), killed when the test ends. */
function rawStdio(t: TestContext, extra: string[] = []) {
  const child = spawn(process.execPath, [CLI, '--address', worker.address, 'mcp', ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
  }) as ChildProcessWithoutNullStreams;
  const messages: Record<string, unknown>[] = [];
  let stderr = '';
  let buffered = '';
  let exited: number | null | undefined;
  child.on('exit', (code, signal) => (exited = code ?? (signal ? -1 : null)));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      messages.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
      buffered = buffered.slice(nl + 1);
    }
  });
  child.stdin.on('error', () => undefined);
  t.after(() => {
    if (exited === undefined) child.kill('SIGKILL');
  });
  const send = (message: Record<string, unknown>) => child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
  const initialize = async () => {
    send({ id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    await waitFor(() => messages.some((m) => m.id === 0));
    send({ method: 'notifications/initialized' });
  };
  return { child, messages, send, initialize, stderr: () => stderr, exited: () => exited };
}

/** The connection initialized, a run_code printing forever, its output seen: one session of the connection's. */
async function streaming(raw: ReturnType<typeof rawStdio>): Promise<void> {
  await raw.initialize();
  raw.send({
    id: 1,
    method: 'tools/call',
    params: { name: 'run_code', arguments: { code: 'import time\nwhile True:\n    print("tick", flush=True)\n    time.sleep(0.005)' } },
  });
  await waitFor(() => raw.messages.some((m) => m.method === 'notifications/message'));
  assert.equal((await mcpSessions()).length, 1);
}

/** The server gone, and no session of the connection's left. */
async function noneLeft(raw: ReturnType<typeof rawStdio>): Promise<void> {
  await waitFor(() => raw.exited() !== undefined, 20_000);
  await waitFor(noMcpSessions, 20_000).catch(async () =>
    assert.fail(`sessions left behind: ${(await mcpSessions()).join(', ')} (mcp exited ${raw.exited()}, stderr: ${raw.stderr()})`),
  );
}

test('stdio: a client killed while a run streams its output leaves no session behind', async (t) => {
  sweep(t);
  const raw = rawStdio(t);
  await streaming(raw);
  // The client dies: both ends of its pipes close at once.
  raw.child.stdin.destroy();
  raw.child.stdout.destroy();
  await noneLeft(raw);
});

test('stdio: a client whose reading end closes first (EPIPE on our stdout) leaves no session behind', async (t) => {
  sweep(t);
  const raw = rawStdio(t);
  await streaming(raw);
  // The client's reader is gone (killed halfway, or a crash of its reading side); its stdin follows later.
  raw.child.stdout.destroy();
  await waitFor(() => raw.exited() !== undefined, 5_000).catch(() => undefined);
  raw.child.stdin.end();
  await noneLeft(raw);
});

test('stdio: the connection closing while its default session is being made leaves no session behind', async (t) => {
  sweep(t);
  const raw = rawStdio(t);
  await raw.initialize();
  // A first call (refused: no such session) connects the server to the worker.
  raw.send({ id: 1, method: 'tools/call', params: { name: 'run_code', arguments: { code: 'print(1)', session_id: 'session-nope' } } });
  await waitFor(() => raw.messages.some((m) => m.id === 1));
  raw.send({ id: 2, method: 'tools/call', params: { name: 'run_code', arguments: { code: 'print(1)' } } });
  // Gone at once: the default session is still being made when stdin ends.
  raw.child.stdin.end();
  // The worker has made the session the call asked for (or refused it): none of them may be left.
  await waitFor(() => worker.logs.filter((l) => l.message === 'session created').length > 0, 20_000);
  await noneLeft(raw);
});

test('stdio: a message larger than the transport takes, then the client goes: no hang, no session left', async (t) => {
  sweep(t);
  const raw = rawStdio(t);
  await raw.initialize();
  raw.send({ id: 1, method: 'tools/call', params: { name: 'run_code', arguments: { code: 'print(1)' } } });
  await waitFor(() => raw.messages.some((m) => m.id === 1));
  assert.equal((await mcpSessions()).length, 1);
  // 11 MiB in one line: more than the SDK's stdio read buffer (10 MiB), which then closes the transport.
  raw.send({ id: 2, method: 'tools/call', params: { name: 'write_file', arguments: { path: 'big.txt', contents: 'x'.repeat(11 * 1024 * 1024) } } });
  raw.child.stdin.end();
  await waitFor(() => raw.exited() !== undefined, 20_000).catch(() => assert.fail(`the mcp process hangs after its stdin ended (stderr: ${raw.stderr()})`));
  await waitFor(noMcpSessions, 20_000);
});

/** The SDK's client of `codegen-worker mcp` on stdio, closed when the test ends, and a tools/call of it. */
async function sdkClient(t: TestContext) {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, '--address', worker.address, 'mcp'], stderr: 'pipe' });
  const client = new Client({ name: 'mcp-attack', version: '1.0.0' });
  await client.connect(transport);
  t.after(() => client.close());
  const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as CallToolResult;
  return { client, call };
}

test("destroying the connection's default session by its id: the next plain run_code makes a new one", async (t) => {
  sweep(t);
  const { client, call } = await sdkClient(t);
  const first = await call('run_code', { code: 'print(1)' });
  assert.ok(!first.isError);
  const own = (first.structuredContent as { session_id: string }).session_id;
  assert.ok(!(await call('destroy_session', { session_id: own })).isError);
  assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId: own })), Status.NOT_FOUND);
  const next = await call('run_code', { code: 'print(2)' });
  assert.ok(!next.isError, `a plain run_code after the default session was destroyed by id: ${JSON.stringify(next.content)}`);
  assert.notEqual((next.structuredContent as { session_id: string }).session_id, own);
  await client.close();
  await waitFor(noMcpSessions, 20_000);
});

test("the connection's own session ended elsewhere (the worker's idle reaper, another client): said once, then a new one", async (t) => {
  sweep(t);
  const { client, call } = await sdkClient(t);
  const own = ((await call('run_code', { code: 'print(1)' })).structuredContent as { session_id: string }).session_id;
  await worker.sessions.destroySession({ sessionId: own });
  const gone = await call('run_code', { code: 'print(2)' });
  assert.equal(gone.isError, true);
  assert.match((gone.content as { text: string }[])[0]!.text, /^NOT_FOUND: .*own session is gone: the next call makes a new one\)$/);
  // A missing file of a live default session is no such thing.
  const next = await call('run_code', { code: 'print(3)' });
  assert.equal((next.structuredContent as { stdout: string }).stdout, '3\n');
  assert.notEqual((next.structuredContent as { session_id: string }).session_id, own);
  const missing = await call('read_file', { path: 'missing.txt' });
  assert.doesNotMatch((missing.content as { text: string }[])[0]!.text, /gone/);
  assert.equal(
    ((await call('run_code', { code: 'print(4)' })).structuredContent as { session_id: string }).session_id,
    (next.structuredContent as { session_id: string }).session_id,
  );
  await client.close();
  await waitFor(noMcpSessions, 20_000);
});

test('over HTTP: a client that simply vanishes (no DELETE) has its sessions destroyed', async (t) => {
  sweep(t);
  const server = spawn(process.execPath, [CLI, '--address', worker.address, 'mcp', '--http', '127.0.0.1:0', '--idle-timeout', '2'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => server.kill('SIGTERM'));
  let stderr = '';
  server.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const listening = /Streamable HTTP at (http:\/\/127\.0\.0\.1:\d+\/mcp)/;
  await waitFor(() => listening.test(stderr) || /error/.test(stderr));
  assert.match(stderr, listening);
  const url = listening.exec(stderr)![1]!;
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    }),
  });
  assert.equal(init.status, 200);
  const id = init.headers.get('mcp-session-id')!;
  await init.text();
  const session = { ...headers, 'mcp-session-id': id, 'mcp-protocol-version': '2025-06-18' };
  await (await fetch(url, { method: 'POST', headers: session, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
  const ran = await fetch(url, {
    method: 'POST',
    headers: session,
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'run_code', arguments: { code: 'print(1)' } } }),
  });
  assert.match(await ran.text(), /"exit_code":0/);
  assert.equal((await mcpSessions()).length, 1);
  // The client vanishes: no DELETE, no further request, no stream held open.
  await waitFor(noMcpSessions, 30_000).catch(async () => assert.fail(`sessions left behind: ${(await mcpSessions()).join(', ')} (mcp stderr: ${stderr})`));
});
