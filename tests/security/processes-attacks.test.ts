import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { createWorkerClient, Processes } from '../../src/client/index.js';
import { callTool, processesMarked, runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Found by an attack on background processes and port URLs (a helper session with fresh eyes):
// each test failed on the code before its fix.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_BACKGROUND: '2' } });
});
after(async () => worker?.stop());

const session = async (workspaceId: string, config = {}) => (await worker.sessions.createSession({ workspaceId, config })).sessionId;
const start = (sessionId: string, command: string) => runTool(worker.tasks, sessionId, 'run.shell', { command, background: 'true' });

async function serving(sessionId: string, processId: string, text: string): Promise<void> {
  await waitFor(async () => (await runTool(worker.tasks, sessionId, 'proc.output', { process_id: processId })).output!.includes(text), 20_000);
}

// Interim answers, without end: Node parsed each as it came, and one session took 80% of the
// worker's CPU (another session's echo went from 3.5 to 2,112 ms).
const INTERIM_FLOOD = String.raw`
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8100)); s.listen(64); print("listening", flush=True)
chunk = b"HTTP/1.1 100 Continue\r\n\r\n" * 4000
def serve(c):
    try:
        c.recv(65536)
        while True: c.sendall(chunk)
    except OSError: pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

test("a session's server answering with endless interim (1xx) answers gets its request refused, 502", async () => {
  const sessionId = await session('interim');
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'f.py', contents: INTERIM_FLOOD });
  const { process_id } = await start(sessionId, 'exec python3 f.py');
  await serving(sessionId, process_id!, 'listening');
  const { url } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8100' });
  const answer = await fetch(url!, { signal: AbortSignal.timeout(10_000) });
  assert.equal(answer.status, 502);
  assert.match(await answer.text(), /more than 8 interim \(1xx\) answers/);
  await worker.sessions.destroySession({ sessionId });
});

// end() waited for the pipe to drain: the call never answered, and DestroySession waited on it.
test('proc.stdin with eof to a process that never reads answers at once; DestroySession then ends it', async () => {
  const sessionId = await session('stdin-eof', { env: { CODEGEN_TEST_MARK: 'stdin-eof' } });
  const { process_id } = await start(sessionId, 'exec sleep 600');
  const data = Buffer.alloc(1000 * 1024, 0x61).toString('base64');
  const call = await callTool(worker.tasks, sessionId, 'proc.stdin', { process_id: process_id!, data, encoding: 'base64', eof: 'true' }, 10_000);
  assert.equal(call.code, Status.OK, call.details);
  assert.equal(call.result?.outputs.bytes, String(1000 * 1024));
  await worker.sessions.destroySession({ sessionId }, { deadline: 20_000 });
  await waitFor(() => processesMarked('CODEGEN_TEST_MARK', 'stdin-eof').length === 0, 10_000);
});

// The bound was checked before an await and the process counted after it: 12 at once all ran.
test('background starts made at once never run more than WORKER_MAX_BACKGROUND', async () => {
  const sessionId = await session('max-race');
  const calls = await Promise.all(
    Array.from({ length: 12 }, () => callTool(worker.tasks, sessionId, 'run.shell', { command: 'exec sleep 600', background: 'true' })),
  );
  assert.equal(calls.filter((c) => c.code === Status.OK).length, 2);
  assert.ok(calls.every((c) => c.code === Status.OK || c.code === Status.RESOURCE_EXHAUSTED));
  const listed = JSON.parse((await runTool(worker.tasks, sessionId, 'proc.list', {})).processes_json!) as { running: boolean }[];
  assert.equal(listed.filter((p) => p.running).length, 2);
  await worker.sessions.destroySession({ sessionId });
});

// Another spelling of the same fields passed the signature check: only the URL issued works.
test('a port URL spelled otherwise (leading zeros, a percent-encoded session id) is 403', async () => {
  const sessionId = await session('url-forms');
  const { url } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8080' });
  assert.equal((await fetch(url!)).status, 502, 'the URL as issued reaches the session (nothing listens)');
  const u = new URL(url!);
  const [, prefix, sid, port, expiry, signature] = u.pathname.split('/');
  const variants = [
    `/${prefix}/${sid}/0${port}/${expiry}/${signature}/`,
    `/${prefix}/${sid}/${port}/00${expiry}/${signature}/`,
    `/${prefix}/${sid!.replace('s', '%73')}/${port}/${expiry}/${signature}/`,
  ];
  for (const path of variants) assert.equal((await fetch(new URL(path, u))).status, 403, path);
  await worker.sessions.destroySession({ sessionId });
});

// An offset past the end answered "nothing yet" with next there: a reader resuming from it would never see the output.
test('proc.output from an offset past the end of the output is INVALID_ARGUMENT', async () => {
  const sessionId = await session('since');
  const { process_id } = await start(sessionId, 'echo hello; exec sleep 100');
  await serving(sessionId, process_id!, 'hello');
  const past = await callTool(worker.tasks, sessionId, 'proc.output', { process_id: process_id!, since: '999999999999999' });
  assert.equal(past.code, Status.INVALID_ARGUMENT);
  assert.match(past.details, /past the end of process p\d+'s output \(next 6\)/);
  assert.equal((await runTool(worker.tasks, sessionId, 'proc.output', { process_id: process_id!, since: '6' })).output, '', 'at the end: nothing, fine');
  await worker.sessions.destroySession({ sessionId });
});

// wait() followed in one task, which the session's task timeout ended: it rejected.
test("the client's wait() outlasts task timeouts: it resolves when the process exits", async () => {
  const client = createWorkerClient(worker.address);
  try {
    const { sessionId } = await client.sessions.createSession({ workspaceId: 'wait', config: { limits: { timeoutSeconds: 1 } } });
    const seen: string[] = [];
    const p = await new Processes(client.tasks, sessionId).start('echo one; sleep 2.5; echo two', { onStdout: (text) => seen.push(text) });
    assert.deepEqual(await p.wait(), { exitCode: 0 });
    assert.equal(seen.join(''), 'one\ntwo\n', 'each byte once, across the follows');
    await client.sessions.destroySession({ sessionId });
  } finally {
    client.close();
  }
});

// Ids were counted in memory from p1: after a restart the new p1 took the old one's signals.
test("after a restart, a process id from before names no process of the new worker's", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-restart-ids-'));
  const started: RunningWorker[] = [];
  const startOne = async () => {
    const w = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0' } });
    started.push(w);
    return w;
  };
  try {
    const first = await startOne();
    const { sessionId } = await first.sessions.createSession({ workspaceId: 'restart-ids' });
    const old = await runTool(first.tasks, sessionId, 'run.shell', { command: 'exec sleep 1000', background: 'true' });
    assert.equal(old.process_id, 'p1');
    await stopHard(first);
    const second = await startOne();
    const fresh = await runTool(second.tasks, sessionId, 'run.shell', { command: 'exec sleep 1000', background: 'true' });
    assert.equal(fresh.process_id, 'p2');
    const stale = await callTool(second.tasks, sessionId, 'proc.signal', { process_id: old.process_id!, signal: 'KILL' });
    assert.equal(stale.code, Status.NOT_FOUND);
  } finally {
    for (const w of started) await stopHard(w);
    rmSync(dataDir, { recursive: true, force: true });
  }
});
