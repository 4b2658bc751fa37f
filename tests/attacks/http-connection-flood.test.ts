import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The promise: whoever reaches the HTTP endpoint (artifact URLs are handed out to be used from
// anywhere) cannot take the worker's descriptors, which its sessions need for every call. Each
// connection held open is one; nothing bounded how many a client could hold.

const MAX_CONNECTIONS = 64;
const FLOOD = 400;

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_HTTP_MAX_CONNECTIONS: String(MAX_CONNECTIONS), WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => worker?.stop());

const descriptors = () => readdirSync(`/proc/${worker.process.pid}/fd`).length;

test(`${FLOOD} idle connections to the HTTP endpoint hold at most ${MAX_CONNECTIONS} of the worker's descriptors; sessions keep working`, async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'bystander' });
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(1)' })).stdout, '1\n');
  const before = descriptors();
  const flood: { socket: Socket; closed: boolean }[] = [];
  for (let i = 0; i < FLOOD; i++) {
    const entry = { socket: connect(worker.httpPort, '127.0.0.1'), closed: false };
    entry.socket.on('close', () => (entry.closed = true)).on('error', () => undefined);
    entry.socket.resume();
    flood.push(entry);
  }
  try {
    const closed = () => flood.filter((c) => c.closed).length;
    await waitFor(() => closed() >= FLOOD - MAX_CONNECTIONS, 10_000).catch(() => undefined); // the assertion says what happened
    assert.ok(closed() >= FLOOD - MAX_CONNECTIONS, `the worker closed ${closed()} of ${FLOOD} connections`);
    const held = descriptors() - before;
    assert.ok(held <= MAX_CONNECTIONS + 16, `the worker holds ${held} more descriptors during the flood`);
    assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(2)' })).stdout, '2\n', 'a session still runs code');
  } finally {
    for (const c of flood) c.socket.destroy();
  }
  // Once the flood has gone, the endpoint serves again.
  await waitFor(async () => (await fetch(`http://127.0.0.1:${worker.httpPort}/healthz`).catch(() => undefined))?.status === 200, 10_000);
  await worker.sessions.destroySession({ sessionId });
});
