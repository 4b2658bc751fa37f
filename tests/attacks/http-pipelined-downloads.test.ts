import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The promise: whoever holds an artifact URL cannot take the worker's descriptors through the
// HTTP endpoint, under its connection limit too (a connection holds two at most: itself and
// the file it sends). Found by an attack: one connection pipelining
// thousands of GETs of an artifact, reading none, had each handler open the file while its
// answer waited behind the first; when the connection closed the files stayed open. Four such
// connections, one after another, took the worker to its descriptor limit and it exited (EMFILE).

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => worker?.stop());

const descriptors = () => readdirSync(`/proc/${worker.process.pid}/fd`).length;

test("a connection pipelining thousands of artifact GETs is closed, and holds none of the worker's descriptors once gone", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'pipelined' });
  const bytes = randomBytes(4 * 1024 * 1024);
  const upload = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'a.bin', contentType: 'application/octet-stream', sizeBytes: bytes.length });
  const put = await fetch(upload.uploadUrl, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 200);
  const { storageUrl } = await worker.artifacts.recordArtifact({
    sessionId,
    artifactId: upload.artifactId,
    artifactName: 'a.bin',
    artifactType: 'blob',
    sizeBytes: bytes.length,
    checksumSha256: createHash('sha256').update(bytes).digest('hex'),
    metadata: {},
  });
  const url = new URL(storageUrl);
  const baseline = descriptors();
  for (let round = 0; round < 3; round++) {
    const socket = connect(Number(url.port), url.hostname);
    let closed = false;
    socket.on('close', () => (closed = true)).on('error', () => undefined);
    socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: worker\r\n\r\n`.repeat(3000));
    socket.resume(); // what comes is dropped; the reset that ends it is seen
    await waitFor(() => closed, 10_000).catch(() => undefined); // the assertion says what happened
    const held = descriptors() - baseline;
    socket.destroy();
    assert.ok(closed, `round ${round}: the worker kept the connection open, holding ${held} more descriptors`);
    await waitFor(() => descriptors() <= baseline + 2, 10_000).catch(() => undefined);
    assert.ok(descriptors() <= baseline + 2, `round ${round}: the worker holds ${descriptors() - baseline} more descriptors once the connection is gone`);
  }
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(7)' })).stdout, '7\n');
  // A client that pipelines a few and reads them gets every answer.
  const answers = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      got += chunk;
      if (got.split('HTTP/1.1 200').length - 1 === 3 && got.length >= 3 * bytes.length) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
    socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: worker\r\n\r\n`.repeat(3));
  });
  assert.equal(answers.split('HTTP/1.1 200').length - 1, 3);
  await worker.sessions.destroySession({ sessionId });
});
