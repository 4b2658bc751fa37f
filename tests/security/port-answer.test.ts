import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Found by an attack (a helper session): the session's own server answered a port URL's request
// with a status line Node's parser takes but ServerResponse.writeHead refuses (a control
// character in the reason phrase, status 099), and the throw ended the worker, every session
// with it; a 101 to a plain GET left the client without an answer. What the session's server
// says is the session's: a bad answer is a 502, and the worker goes on.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker();
});
after(async () => worker?.stop());

/** A server on 127.0.0.1:<port> in the session answering every connection with `raw`. */
const rawServer = (port: number, raw: string) => String.raw`
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", ${port})); s.listen(); print("listening", flush=True)
while True:
    c, _ = s.accept(); c.recv(65536); c.sendall(${JSON.stringify(raw)}.encode("latin-1")); c.close()
`;

async function serve(sessionId: string, port: number, raw: string): Promise<string> {
  await runTool(worker.tasks, sessionId, 'fs.write', { path: `srv${port}.py`, contents: rawServer(port, raw) });
  const { process_id } = await runTool(worker.tasks, sessionId, 'run.shell', { command: `exec python3 srv${port}.py`, background: 'true' });
  await waitFor(async () => (await runTool(worker.tasks, sessionId, 'proc.output', { process_id: process_id! })).output!.includes('listening'), 20_000);
  return (await runTool(worker.tasks, sessionId, 'port.url', { port: String(port) })).url!;
}

for (const [name, raw, expected] of [
  ['a control character in the reason phrase (passed on without it)', 'HTTP/1.1 200 O\x01K\r\ncontent-length: 0\r\n\r\n', 200],
  ['status 099 (a 502)', 'HTTP/1.1 099 x\r\ncontent-length: 0\r\n\r\n', 502],
] as const) {
  test(`a session server answering with ${name}: the client gets a clean answer, and the worker lives`, async () => {
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'crash' });
    const url = await serve(sessionId, 8000 + expected, raw);
    const status = await fetch(url).then(
      (r) => r.status,
      (e: Error) => `fetch failed: ${e.message}`,
    );
    assert.equal(status, expected);
    assert.ok((await worker.sessions.getCapacity({})).totalSessions > 0, 'the worker still serves');
    assert.equal(worker.process.exitCode, null);
    await worker.sessions.destroySession({ sessionId });
  });
}

test('a session server answering 101 to a plain GET: the client gets an answer, not a hang', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'hang' });
  const url = await serve(sessionId, 8001, 'HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n');
  const status = await fetch(url, { signal: AbortSignal.timeout(10_000) }).then(
    (r) => r.status,
    (e: Error) => `no answer in 10 s: ${e.name}`,
  );
  assert.equal(status, 502);
  await worker.sessions.destroySession({ sessionId });
});
