// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { test } from 'node:test';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker } from '../helpers/worker.js';

// grpc.health.v1 and the HTTP probes: SERVING / ready once started; from the first SIGTERM
// NOT_SERVING / 503 at once, while a running task still drains; a Watch stream sees the change.

const identity = (b: Buffer) => b;
const SERVING = 1;
const NOT_SERVING = 2;
/** HealthCheckRequest{service} and the status of a HealthCheckResponse, by hand: no protos needed. */
const request = (service: string) => Buffer.concat([Buffer.from([0x0a, service.length]), Buffer.from(service)]);
const statusOf = (response: Buffer) => (response.length >= 2 && response[0] === 0x08 ? response.readUInt8(1) : 0);

function check(client: Client, service: string): Promise<number> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      identity,
      identity,
      request(service),
      new Metadata(),
      { deadline: new Date(Date.now() + 5000) },
      (err, value) => (err ? reject(err) : resolve(statusOf(value!))),
    ),
  );
}

function probe(port: number, path: string): Promise<number> {
  return new Promise((resolve) => get({ host: '127.0.0.1', port, path }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', () => resolve(0)));
}

test('SERVING and ready after start; NOT_SERVING and 503 within 100 ms of SIGTERM while a task drains; Watch sees it', async (t) => {
  const worker = await startWorker({ env: { WORKER_SHUTDOWN_GRACE_SECONDS: '10', WORKER_SPARE_SESSIONS: '0' } });
  const client = new Client(worker.address, credentials.createInsecure());
  try {
    for (const service of ['', 'codegen.v1.SessionManagement', 'codegen.v1.TaskExecution', 'codegen.v1.ArtifactService'])
      assert.equal(await check(client, service), SERVING, service);
    assert.deepEqual([await probe(worker.httpPort, '/healthz'), await probe(worker.httpPort, '/readyz')], [200, 200]);

    const watched: { status: number; at: number }[] = [];
    const watch = client.makeServerStreamRequest('/grpc.health.v1.Health/Watch', identity, identity, request(''), new Metadata());
    watch.on('data', (b: Buffer) => watched.push({ status: statusOf(b), at: performance.now() }));
    watch.on('error', () => undefined);
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'drain' });
    const draining = runTaskWithin(
      worker.tasks,
      { sessionId, toolName: 'run.python', arguments: { code: 'import time\ntime.sleep(2)\nprint("drained")' } },
      30_000,
    );
    await waitFor(async () => watched.length > 0 && (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
    assert.deepEqual(
      watched.map((w) => w.status),
      [SERVING],
    );

    const signalled = performance.now();
    worker.process.kill('SIGTERM');
    while (watched.length < 2 && performance.now() - signalled < 5000) await new Promise((r) => setTimeout(r, 5));
    const changedAfter = (watched[1]?.at ?? Infinity) - signalled;
    t.diagnostic(`Watch saw NOT_SERVING ${changedAfter.toFixed(1)} ms after SIGTERM`);
    assert.equal(watched[1]?.status, NOT_SERVING);
    assert.ok(changedAfter < 100, `NOT_SERVING came ${changedAfter.toFixed(0)} ms after SIGTERM`);
    assert.equal(await check(client, ''), NOT_SERVING);
    assert.deepEqual([await probe(worker.httpPort, '/healthz'), await probe(worker.httpPort, '/readyz')], [200, 503], '/healthz alive, /readyz not ready');

    const drained = await draining;
    assert.equal(drained.result?.outputs.stdout, 'drained\n', 'the running task finished');
  } finally {
    client.close();
    await worker.stop();
  }
});
