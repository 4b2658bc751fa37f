import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { get } from 'node:https';
import { after, before, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { Status } from 'nice-grpc';
import { createWorkerClient } from '../../src/client/index.js';
import { makeCa, type TestCa } from '../helpers/certificates.js';
import { statusOf, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// TLS with a CA and certificates made by openssl for the test: clients trusting the CA connect,
// plaintext ones and ones trusting another CA do not; mTLS refuses clients without a
// certificate; a certificate replaced on disk is served without a restart, on gRPC and HTTP.

let ca: TestCa;
let other: TestCa;
let server: ReturnType<TestCa['issue']>;
let worker: RunningWorker;

before(async () => {
  ca = makeCa('fleet');
  other = makeCa('other');
  server = ca.issue('server');
  worker = await startWorker({
    env: { WORKER_TLS_CERT: server.certFile, WORKER_TLS_KEY: server.keyFile },
    client: { credentials: credentials.createSsl(ca.ca) },
  });
});

after(async () => {
  await worker?.stop();
  ca?.remove();
  other?.remove();
});

const capacityWith = (creds: ReturnType<typeof credentials.createSsl> | undefined, address = worker.address) => {
  const client = createWorkerClient(address, { credentials: creds });
  return statusOf(client.sessions.getCapacity({}, { deadline: 5000, retry: false })).finally(() => client.close());
};

/** The serial number of the certificate a TLS endpoint presents to a new connection. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: [ca.ca, other.ca], servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on('error', reject);
  });
}

test('a client trusting the CA connects; plaintext and a client trusting another CA do not', async () => {
  assert.equal(await capacityWith(credentials.createSsl(ca.ca)), Status.OK);
  assert.equal(await capacityWith(credentials.createInsecure()), Status.UNAVAILABLE);
  assert.equal(await capacityWith(credentials.createSsl(other.ca)), Status.UNAVAILABLE);
  assert.equal(worker.logs.find((l) => l.message === 'worker listening')?.tls, 'TLS');
  // The HTTP endpoint speaks TLS too, and upload URLs say https.
  const grant = await worker.artifacts.getUploadURL({
    sessionId: (await worker.sessions.createSession({ workspaceId: 'tls' })).sessionId,
    artifactName: 'a',
    contentType: 'text/plain',
    sizeBytes: 1,
  });
  assert.match(grant.uploadUrl, /^https:\/\//);
  const status = await new Promise<number>((resolve, reject) =>
    get({ host: '127.0.0.1', port: worker.httpPort, path: '/healthz', ca: ca.ca, servername: 'localhost' }, (res) => resolve(res.statusCode ?? 0)).on(
      'error',
      reject,
    ),
  );
  assert.equal(status, 200);
});

test('a certificate replaced on disk is served to new connections without a restart (gRPC and HTTP)', async () => {
  const before = [await servedSerial(Number(worker.address.split(':')[1])), await servedSerial(worker.httpPort)];
  const renewed = ca.issue('renewed');
  copyFileSync(renewed.keyFile, server.keyFile);
  copyFileSync(renewed.certFile, server.certFile);
  const expected = new X509Certificate(renewed.cert).serialNumber;
  await waitFor(async () => (await servedSerial(Number(worker.address.split(':')[1]))) === expected, 10_000);
  await waitFor(async () => (await servedSerial(worker.httpPort)) === expected, 10_000);
  assert.notEqual(before[0], expected);
  assert.equal(await capacityWith(credentials.createSsl(ca.ca)), Status.OK);
});

test('with WORKER_TLS_CLIENT_CA, a client without a certificate is refused, one with a certificate the CA signed is served', async () => {
  const own = ca.issue('client', { client: true });
  const mtls = await startWorker({
    env: { WORKER_TLS_CERT: server.certFile, WORKER_TLS_KEY: server.keyFile, WORKER_TLS_CLIENT_CA: ca.caFile, WORKER_SPARE_SESSIONS: '0' },
    client: { credentials: credentials.createSsl(ca.ca, own.key, own.cert) },
  });
  try {
    const good = ca.issue('agent', { client: true });
    const stranger = other.issue('stranger', { client: true });
    assert.equal(await capacityWith(credentials.createSsl(ca.ca, good.key, good.cert), mtls.address), Status.OK);
    assert.equal(await capacityWith(credentials.createSsl(ca.ca), mtls.address), Status.UNAVAILABLE);
    assert.equal(await capacityWith(credentials.createSsl(ca.ca, stranger.key, stranger.cert), mtls.address), Status.UNAVAILABLE);
    assert.equal(mtls.logs.find((l) => l.message === 'worker listening')?.tls, 'mTLS');
  } finally {
    await mtls.stop();
  }
});

test('the CLI says what is wrong: plaintext against TLS names --tls-ca; nothing listening names the address', () => {
  const cli = new URL('../../src/cli.js', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args, 'capacity'], { encoding: 'utf8', timeout: 30_000 });
  const plaintext = run('--address', worker.address);
  assert.equal(plaintext.status, 1);
  assert.match(plaintext.stderr, /^UNAVAILABLE: .*\n\(the worker at 127\.0\.0\.1:\d+ may speak TLS: pass --tls-ca/);
  assert.equal(run('--address', worker.address, '--tls-ca', ca.caFile).status, 0);
  const nobody = run('--address', '127.0.0.1:1');
  assert.match(nobody.stderr, /\(no worker answers at 127\.0\.0\.1:1: is it running/);
  assert.doesNotMatch(nobody.stderr, /Resolution note/);
});
