import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { after, before, test, type TestContext } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import fc from 'fast-check';
import { Status } from 'nice-grpc';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { statusOf, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// `codegen-worker mcp` driven by the MCP SDK's own client, over stdio and over Streamable HTTP,
// against a real worker: the tools listed, a session made on first use, files, runs whose output
// reaches the client while they run, an install from the loopback index, checkpoint and restore,
// a cancelled run, tool errors for bad arguments, and the sessions gone when the connection closes.

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const README = fileURLToPath(new URL('../../README.md', import.meta.url));
let worker: RunningWorker;
let index: PackageIndex;

before(async () => {
  index = await servePackageIndex([{ name: 'mcppkg', version: '1.0.0', files: { 'mcppkg/__init__.py': 'VALUE = 42\n' } }]);
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url } });
});
after(async () => {
  await worker?.stop();
  await index?.close();
});

/** A client of `codegen-worker mcp` on its stdio, closed when the test ends (a failing one too: its process would hold the run open). */
async function stdioClient(t: TestContext, extra: string[] = []): Promise<{ client: Client; stderr: () => string }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, '--address', worker.address, 'mcp', ...extra], stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: 'mcp-test', version: '1.0.0' });
  await client.connect(transport);
  t.after(() => client.close());
  return { client, stderr: () => stderr };
}

/** `codegen-worker mcp --http` on a free loopback port: its /mcp URL. */
async function httpServer(): Promise<{ url: URL; stop: () => void }> {
  const server = spawn(process.execPath, [CLI, '--address', worker.address, 'mcp', '--http', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  server.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const stop = () => void server.kill('SIGTERM');
  try {
    await waitFor(() => /at (http:\S+)/.test(stderr));
  } catch (err) {
    stop();
    throw err;
  }
  return { url: new URL(/at (http:\S+)/.exec(stderr)![1]!), stop };
}

/** A client of `codegen-worker mcp --http` (started for it), both gone when the test ends. */
async function httpClient(t: TestContext): Promise<{ client: Client; transport: StreamableHTTPClientTransport; url: URL }> {
  const { url, stop } = await httpServer();
  t.after(stop);
  const client = new Client({ name: 'mcp-test-http', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  t.after(() => client.close());
  return { client, transport, url };
}

type Structured = Record<string, unknown>;
const call = async (client: Client, name: string, args: Record<string, unknown>, options?: Parameters<Client['callTool']>[2]) =>
  (await client.callTool({ name, arguments: args }, undefined, options)) as CallToolResult;
const ok = (result: CallToolResult): Structured => {
  assert.ok(!result.isError, `a tool error: ${JSON.stringify(result.content)}`);
  return result.structuredContent as Structured;
};
const errorText = (result: CallToolResult): string => {
  assert.equal(result.isError, true, `expected a tool error, got ${JSON.stringify(result.structuredContent)}`);
  return (result.content as { type: string; text: string }[]).map((c) => c.text).join('\n');
};

/**
 * Everything a connection does, on `client`: tools listed with schemas; a default session made
 * on first use; files, runs with live output, an install, checkpoint and restore, errors; and
 * its sessions gone once `close` ends the connection its transport's way.
 */
async function wholeFlow(client: Client, close: () => Promise<void>): Promise<void> {
  const tools = (await client.listTools()).tools;
  const names = tools.map((t) => t.name).sort();
  for (const name of [
    'checkpoint',
    'create_session',
    'destroy_session',
    'fork_session',
    'install_packages',
    'list_files',
    'port_url',
    'process_output',
    'read_file',
    'restore',
    'run_code',
    'run_command',
    'start_process',
    'stop_process',
    'write_file',
  ])
    assert.ok(names.includes(name), `${name} is listed (${names.join(', ')})`);
  for (const tool of tools) {
    assert.ok(tool.description && tool.description.length > 20, `${tool.name} says what it does`);
    assert.equal(tool.inputSchema.type, 'object');
    assert.ok(tool.outputSchema, `${tool.name} says what it returns`);
  }
  assert.deepEqual(tools.find((t) => t.name === 'run_code')?.inputSchema.required, ['code']);
  // The README's table says each tool's arguments as its schema does (required ones in bold).
  const section = readFileSync(README, 'utf8').split('## As an MCP server')[1]!.split('\n## ')[0]!;
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \| ([^|]*) \|/gm)].map(([, name, args]) => ({
    name: name!,
    args: [...args!.matchAll(/(\*\*)?`([a-z_]+)`/g)].map(([, bold, arg]) => ({ arg: arg!, required: bold !== undefined })),
  }));
  assert.deepEqual(rows.map((r) => r.name).sort(), names);
  for (const { name, args } of rows) {
    const schema = tools.find((t) => t.name === name)!.inputSchema;
    assert.deepEqual(args.map((a) => a.arg).sort(), Object.keys(schema.properties ?? {}).sort(), `${name}'s arguments in the README`);
    assert.deepEqual(
      args
        .filter((a) => a.required)
        .map((a) => a.arg)
        .sort(),
      [...(schema.required ?? [])].sort(),
      `${name}'s required arguments in the README`,
    );
  }

  // A plain run_code just works: the connection's session is made for it.
  const first = ok(await call(client, 'run_code', { code: 'print("hello")' }));
  assert.equal(first.stdout, 'hello\n');
  assert.equal(first.exit_code, 0);
  const own = first.session_id as string;
  assert.match(own, /^session-/);
  assert.equal((await worker.sessions.getSessionStatus({ sessionId: own })).workspaceId, 'mcp');

  // Files: written, read back, listed; bytes by base64.
  ok(await call(client, 'write_file', { path: 'dir/a.txt', contents: 'text ü\n' }));
  ok(await call(client, 'write_file', { path: 'dir/b.bin', contents: Buffer.from([0, 255, 1]).toString('base64'), encoding: 'base64' }));
  assert.equal(ok(await call(client, 'read_file', { path: 'dir/a.txt' })).contents, 'text ü\n');
  assert.equal(ok(await call(client, 'read_file', { path: 'dir/b.bin', encoding: 'base64' })).contents, 'AP8B');
  const listed = ok(await call(client, 'list_files', { path: 'dir' })).entries as { name: string; type: string; size: number }[];
  assert.deepEqual(
    listed.map((e) => [e.name, e.type, e.size]),
    [
      ['a.txt', 'file', 8],
      ['b.bin', 'file', 3],
    ],
  );
  const shell = ok(await call(client, 'run_command', { command: 'cat a.txt; echo oops >&2; exit 3', cwd: 'dir' }));
  assert.deepEqual([shell.stdout, shell.stderr, shell.exit_code], ['text ü\n', 'oops\n', 3]);

  // Live output: the first line reaches the client while the code waits for a file that only
  // this test writes, once it has seen that line: the result cannot come before the progress.
  const seen: string[] = [];
  let released: Promise<unknown> | undefined;
  const live = await call(
    client,
    'run_code',
    { code: 'import os, time\nprint("first", flush=True)\nwhile not os.path.exists("go"):\n    time.sleep(0.02)\nprint("second")' },
    {
      onprogress: (progress) => {
        seen.push(progress.message ?? '');
        if (progress.message === 'first\n') released = call(client, 'write_file', { path: 'go', contents: '' });
      },
    },
  );
  await released;
  assert.equal(ok(live).stdout, 'first\nsecond\n');
  assert.deepEqual(seen.slice(0, 1), ['first\n']);

  // An install from the worker's (loopback) index, then the package imported.
  const installed = ok(await call(client, 'install_packages', { packages: ['mcppkg==1.0.0'] }));
  assert.deepEqual(installed.installed, ['mcppkg']);
  assert.equal(ok(await call(client, 'run_code', { code: 'import mcppkg\nprint(mcppkg.VALUE)' })).stdout, '42\n');

  // Checkpoint and restore: a new session, by id, with the files and the package.
  const checkpoint = ok(await call(client, 'checkpoint', {}));
  const restored = ok(await call(client, 'restore', { checkpoint_id: checkpoint.checkpoint_id }));
  const again = ok(
    await call(client, 'run_code', { code: 'import mcppkg\nprint(mcppkg.VALUE, open("dir/a.txt").read().strip())', session_id: restored.session_id }),
  );
  assert.equal(again.stdout, '42 text ü\n');

  // Bad arguments and refusals are tool errors saying what is wrong.
  assert.match(errorText(await call(client, 'run_code', {})), /code/);
  assert.match(errorText(await call(client, 'run_code', { code: 1 })), /code/);
  assert.match(errorText(await call(client, 'read_file', { path: '../outside' })), /^INVALID_ARGUMENT: .*outside/);
  assert.match(errorText(await call(client, 'read_file', { path: 'missing.txt' })), /^NOT_FOUND: /);
  assert.match(errorText(await call(client, 'run_code', { code: 'print(1)', session_id: 'session-nope' })), /^NOT_FOUND: .*session-nope/);

  // Destroyed by name; then the connection closes and takes its own session with it.
  const extra = ok(await call(client, 'create_session', { language: 'python', memory_mb: 256 }));
  ok(await call(client, 'destroy_session', { session_id: extra.session_id }));
  assert.equal(await statusOf(worker.sessions.getSessionStatus({ sessionId: extra.session_id as string })), Status.NOT_FOUND);
  await close();
  for (const id of [own, restored.session_id as string])
    await waitFor(async () => (await statusOf(worker.sessions.getSessionStatus({ sessionId: id }))) === Status.NOT_FOUND);
}

test('over stdio: tools listed with schemas; a default session made on first use; files, runs with live output, install, checkpoint, restore, errors; gone on close', async (t) => {
  const { client } = await stdioClient(t);
  await wholeFlow(client, () => client.close());
});

test('over Streamable HTTP, the same; the sessions gone when the client ends its MCP session', async (t) => {
  const { client, transport } = await httpClient(t);
  await wholeFlow(client, async () => {
    await transport.terminateSession();
    await client.close();
  });
});

test('write_file then read_file through MCP gives back what went in: generated text (any Unicode) and bytes, replaced and appended', async (t) => {
  const { client } = await stdioClient(t);
  const seed = Number(process.env.MCP_ROUNDTRIP_SEED ?? Date.now() % 2 ** 31);
  t.diagnostic(`seed ${seed} (MCP_ROUNDTRIP_SEED=${seed} repeats it)`);
  // Text as JSON can carry it: any code point but lone surrogates (JSON text is Unicode).
  const text = fc.string({ unit: 'grapheme', maxLength: 200 });
  await fc.assert(
    fc.asyncProperty(text, text, fc.uint8Array({ maxLength: 3000 }), async (first, second, bytes) => {
      ok(await call(client, 'write_file', { path: 'round/t.txt', contents: first }));
      assert.equal(ok(await call(client, 'read_file', { path: 'round/t.txt' })).contents, first);
      ok(await call(client, 'write_file', { path: 'round/t.txt', contents: second, append: true }));
      const both = ok(await call(client, 'read_file', { path: 'round/t.txt' }));
      assert.equal(both.contents, first + second);
      assert.equal(both.size, Buffer.byteLength(first + second));
      ok(await call(client, 'write_file', { path: 'round/b.bin', contents: Buffer.from(bytes).toString('base64'), encoding: 'base64' }));
      const back = ok(await call(client, 'read_file', { path: 'round/b.bin', encoding: 'base64' }));
      assert.deepEqual(Buffer.from(back.contents as string, 'base64'), Buffer.from(bytes));
    }),
    { numRuns: 40, seed },
  );
});

/** A run_code cancelled by the client once its first line arrived: the task is cancelled on the worker, the session serves on. */
async function cancelFlow(client: Client): Promise<void> {
  const abort = new AbortController();
  const cancelledBefore = worker.logs.filter((l) => l.message === 'task finished' && l.tool === 'run.python' && l.status === 'STATUS_CANCELLED').length;
  const running = call(
    client,
    'run_code',
    { code: 'import time\nprint("started", flush=True)\ntime.sleep(600)' },
    { signal: abort.signal, onprogress: (p) => p.message === 'started\n' && abort.abort() },
  );
  await assert.rejects(running, /abort|cancel/i);
  await waitFor(
    () => worker.logs.filter((l) => l.message === 'task finished' && l.tool === 'run.python' && l.status === 'STATUS_CANCELLED').length > cancelledBefore,
  );
  const next = ok(await call(client, 'run_code', { code: 'print(2)' }));
  const told = () => JSON.stringify({ next, logs: worker.logs.slice(-30) });
  assert.deepEqual([next.stdout, next.ended, next.exit_code], ['2\n', 'completed', 0], told());
}

test('a cancelled run_code cancels its task on the worker, over stdio and over HTTP', async (t) => {
  const { client } = await stdioClient(t);
  await cancelFlow(client);
  await client.close();
  const { client: overHttp, transport } = await httpClient(t);
  await cancelFlow(overHttp);
  await transport.terminateSession();
});

test('with --on-close checkpoint the sessions are checkpointed when the connection closes, and the ids said', async (t) => {
  const { client, stderr } = await stdioClient(t, ['--on-close', 'checkpoint']);
  const made = ok(await call(client, 'write_file', { path: 'kept.txt', contents: 'kept' }));
  assert.equal(made.bytes_written, 4);
  await client.close();
  await waitFor(() => /checkpointed as (checkpoint-\S+)/.test(stderr()));
  const checkpointId = /checkpointed as (checkpoint-\S+)/.exec(stderr())![1]!;
  const restored = await worker.sessions.restoreSession({ checkpointId });
  assert.ok(restored.sessionId);
  await worker.sessions.destroySession({ sessionId: restored.sessionId });
});

test('--http listens on loopback only: the MCP server has no authentication of its own', () => {
  const refused = spawnSync(process.execPath, [CLI, '--address', worker.address, 'mcp', '--http', '0.0.0.0:0'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /0\.0\.0\.0 is not a loopback address/);
});

test('over Streamable HTTP: tools, a run with live output, a foreign Host refused, the session gone when the client ends it', async () => {
  const { url, stop } = await httpServer();
  try {
    const client = new Client({ name: 'mcp-test-http', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(url);
    await client.connect(transport);
    assert.ok((await client.listTools()).tools.some((t) => t.name === 'run_command'));
    const seen: string[] = [];
    const run = ok(await call(client, 'run_command', { command: 'echo one; echo two' }, { onprogress: (p) => seen.push(p.message ?? '') }));
    assert.equal(run.stdout, 'one\ntwo\n');
    assert.equal(seen.join(''), 'one\ntwo\n');
    const own = run.session_id as string;

    // A request naming another host (a DNS name a web page controls, pointed here) is refused.
    // (node:http: fetch will not send a Host of the caller's choosing.)
    const initialize = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    });
    const statusWithHost = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          url,
          { method: 'POST', headers: { host, 'content-type': 'application/json', accept: 'application/json, text/event-stream' } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(initialize);
      });
    assert.equal(await statusWithHost(`attacker.example:${url.port}`), 403);
    assert.equal(await statusWithHost('attacker.example'), 403);
    // A page of another origin posting to it from the user's browser (its Host is right) is refused too.
    const fromPage = await fetch(url, {
      method: 'POST',
      headers: { origin: 'http://attacker.example', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: initialize,
    });
    assert.equal(fromPage.status, 403);

    await transport.terminateSession();
    await client.close();
    await waitFor(async () => (await statusOf(worker.sessions.getSessionStatus({ sessionId: own }))) === Status.NOT_FOUND);
  } finally {
    stop();
  }
});
