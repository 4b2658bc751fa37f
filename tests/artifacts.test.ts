import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import S3rver from 's3rver';
import { statusOf, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;
let sessionId: string;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_ARTIFACT_MB: '300' } });
  ({ sessionId } = await worker.sessions.createSession({ workspaceId: 'artifacts' }));
});

after(async () => worker?.stop());

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function put(url: string, body: Buffer, contentType = 'application/gzip'): Promise<number> {
  const res = await fetch(url, { method: 'PUT', body, headers: { 'content-type': contentType } });
  await res.arrayBuffer();
  return res.status;
}

function storedFiles(): string[] {
  const dir = join(worker.dataDir, 'artifacts');
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((n) => !n.endsWith('.incoming') && n !== '.incoming');
}

test("the reference's GetUploadURL / PUT / RecordArtifact flow, end to end, and the artifact fetched back", async () => {
  const bytes = randomBytes(1024000);
  const upload = await worker.artifacts.getUploadURL({
    sessionId,
    artifactName: 'build-output.tar.gz',
    contentType: 'application/gzip',
    sizeBytes: bytes.length,
  });
  assert.match(upload.artifactId, /^artifact-/);
  assert.ok(upload.expiresAtMs > Date.now());
  assert.equal(await put(upload.uploadUrl, bytes), 200);
  const receipt = await worker.artifacts.recordArtifact({
    sessionId,
    artifactId: upload.artifactId,
    artifactName: 'build-output.tar.gz',
    artifactType: 'build_archive',
    sizeBytes: bytes.length,
    checksumSha256: sha256(bytes),
    metadata: { build_id: 'build-789', commit: 'abc123def' },
  });
  assert.equal(receipt.artifactId, upload.artifactId);
  assert.ok(Math.abs(receipt.recordedAtMs - Date.now()) < 60_000);
  assert.ok((await worker.sessions.getSessionStatus({ sessionId })).artifacts.includes(upload.artifactId));
  const fetched = await fetch(receipt.storageUrl);
  assert.equal(fetched.status, 200);
  assert.ok(Buffer.from(await fetched.arrayBuffer()).equals(bytes));
  // The same facts again: the same receipt.
  const again = await worker.artifacts.recordArtifact({
    sessionId,
    artifactId: upload.artifactId,
    artifactName: 'build-output.tar.gz',
    artifactType: 'build_archive',
    sizeBytes: bytes.length,
    checksumSha256: sha256(bytes),
    metadata: { build_id: 'build-789', commit: 'abc123def' },
  });
  assert.equal(again.recordedAtMs, receipt.recordedAtMs);
  // One PUT per URL.
  assert.equal(await put(upload.uploadUrl, bytes), 409);
  // The artifact outlives its session.
  const { sessionId: other } = await worker.sessions.createSession({ workspaceId: 'short-lived' });
  const small = Buffer.from('hello');
  const up2 = await worker.artifacts.getUploadURL({ sessionId: other, artifactName: 'a.txt', contentType: 'text/plain', sizeBytes: small.length });
  assert.equal(await put(up2.uploadUrl, small, 'text/plain'), 200);
  const r2 = await worker.artifacts.recordArtifact({
    sessionId: other,
    artifactId: up2.artifactId,
    artifactName: 'a.txt',
    artifactType: 'text',
    sizeBytes: 5,
    checksumSha256: sha256(small),
    metadata: {},
  });
  await worker.sessions.destroySession({ sessionId: other });
  assert.equal(Buffer.from(await (await fetch(r2.storageUrl)).arrayBuffer()).toString(), 'hello');
});

test('a tampered URL (each signed field) and an expired one are 403; nothing is stored', async () => {
  const before = storedFiles().length;
  const bytes = Buffer.from('x'.repeat(100));
  const upload = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'x', contentType: 'text/plain', sizeBytes: 100 });
  const tamper = (field: string, value: string) => {
    const url = new URL(upload.uploadUrl);
    url.searchParams.set(field, value);
    return url.href;
  };
  const otherId = (await worker.artifacts.getUploadURL({ sessionId, artifactName: 'y', contentType: 'text/plain', sizeBytes: 100 })).artifactId;
  const cases = [
    tamper('session', 'session-someoneelse'),
    tamper('size', '1000000'),
    tamper('type', 'application/octet-stream'),
    tamper('expires', String(Date.now() + 10 ** 9)),
    tamper('signature', '0'.repeat(64)),
    upload.uploadUrl.replace(upload.artifactId, otherId),
  ];
  for (const url of cases) assert.equal(await put(url, bytes, new URL(url).searchParams.get('type') ?? 'text/plain'), 403, url);
  assert.equal(await put(upload.uploadUrl, bytes, 'text/html'), 403, 'content type other than signed');
  const expiring = await startWorker({ env: { WORKER_UPLOAD_URL_TTL_SECONDS: '1' } });
  try {
    const s = await expiring.sessions.createSession({ workspaceId: 'e' });
    const u = await expiring.artifacts.getUploadURL({ sessionId: s.sessionId, artifactName: 'x', contentType: 'text/plain', sizeBytes: 100 });
    const expires = Number(new URL(u.uploadUrl).searchParams.get('expires'));
    await waitFor(() => Date.now() > expires, 2_000);
    assert.equal(await put(u.uploadUrl, bytes, 'text/plain'), 403);
  } finally {
    await expiring.stop();
  }
  assert.equal(storedFiles().length, before);
  const unknown = new URL(upload.uploadUrl);
  unknown.pathname = '/elsewhere';
  assert.equal(await put(unknown.href, bytes, 'text/plain'), 404);
});

test('an oversize body is 413 and a truncated upload leaves nothing behind', async () => {
  const before = storedFiles().length;
  const upload = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'x', contentType: 'text/plain', sizeBytes: 1000 });
  assert.equal(await put(upload.uploadUrl, Buffer.alloc(1001), 'text/plain'), 413);
  // Declared 1000 bytes, sent 500 (the worker has claimed the URL for them), then the connection dropped.
  const claim = join(worker.dataDir, 'artifacts', `${upload.artifactId}.claim`);
  const url = new URL(upload.uploadUrl);
  const req = request({
    host: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    method: 'PUT',
    headers: { 'content-type': 'text/plain', 'content-length': '1000' },
  });
  req.on('error', () => undefined);
  req.write(Buffer.alloc(500));
  await waitFor(() => existsSync(claim));
  req.destroy();
  // The worker gives the claim back once it sees the upload broken off.
  await waitFor(() => !existsSync(claim));
  assert.deepEqual(readdirSync(join(worker.dataDir, 'artifacts', '.incoming')), []);
  assert.equal(storedFiles().length, before);
  // The URL still takes its one whole upload.
  assert.equal(await put(upload.uploadUrl, Buffer.alloc(1000), 'text/plain'), 200);
});

test('RecordArtifact refuses a wrong checksum or size (INVALID_ARGUMENT) and a record before upload (NOT_FOUND)', async () => {
  const bytes = Buffer.from('payload');
  const upload = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'p', contentType: 'text/plain', sizeBytes: bytes.length });
  const facts = {
    sessionId,
    artifactId: upload.artifactId,
    artifactName: 'p',
    artifactType: 'text',
    sizeBytes: bytes.length,
    checksumSha256: sha256(bytes),
    metadata: {},
  };
  assert.equal(await statusOf(worker.artifacts.recordArtifact(facts)), Status.NOT_FOUND);
  assert.equal(await put(upload.uploadUrl, bytes, 'text/plain'), 200);
  assert.equal(await statusOf(worker.artifacts.recordArtifact({ ...facts, checksumSha256: sha256(Buffer.from('other')) })), Status.INVALID_ARGUMENT);
  assert.equal(await statusOf(worker.artifacts.recordArtifact({ ...facts, sizeBytes: 3 })), Status.INVALID_ARGUMENT);
  assert.equal(await statusOf(worker.artifacts.recordArtifact(facts)), Status.OK);
  assert.equal(await statusOf(worker.artifacts.recordArtifact({ ...facts, artifactName: 'renamed' })), Status.ALREADY_EXISTS);
});

test('GetUploadURL: unknown session NOT_FOUND; size over WORKER_MAX_ARTIFACT_MB or not positive INVALID_ARGUMENT', async () => {
  assert.equal(await statusOf(worker.artifacts.getUploadURL({ sessionId: 'session-nope', artifactName: 'x', sizeBytes: 1 })), Status.NOT_FOUND);
  assert.equal(await statusOf(worker.artifacts.getUploadURL({ sessionId, artifactName: 'x', sizeBytes: 301 * 1024 * 1024 })), Status.INVALID_ARGUMENT);
  assert.equal(await statusOf(worker.artifacts.getUploadURL({ sessionId, artifactName: 'x', sizeBytes: 0 })), Status.INVALID_ARGUMENT);
});

test('a 200 MB upload streams to disk (worker RSS growth measured)', async () => {
  const size = 200 * 1024 * 1024;
  const upload = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'big.bin', contentType: 'application/octet-stream', sizeBytes: size });
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${worker.process.pid}/status`, 'utf8'))![1]) * 1024;
  const before = rss();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 50);
  const chunk = randomBytes(1024 * 1024);
  const hash = createHash('sha256');
  let sent = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      controller.enqueue(chunk);
      hash.update(chunk);
      sent += chunk.length;
    },
  });
  const res = await fetch(upload.uploadUrl, {
    method: 'PUT',
    body,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    duplex: 'half',
  });
  clearInterval(sampler);
  assert.equal(res.status, 200);
  const growthMb = (peak - before) / 1024 / 1024;
  process.stdout.write(`# 200 MB upload: worker RSS grew ${growthMb.toFixed(1)} MB at most\n`);
  assert.equal(
    (
      await worker.artifacts.recordArtifact({
        sessionId,
        artifactId: upload.artifactId,
        artifactName: 'big.bin',
        artifactType: 'blob',
        sizeBytes: size,
        checksumSha256: hash.digest('hex'),
        metadata: {},
      })
    ).artifactId,
    upload.artifactId,
  );
});

test('with an S3-compatible store: the store presigns the PUT and RecordArtifact checks the object there', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'codegen-s3a-'));
  const s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: 'fleet', configs: [] }] });
  const { port } = await s3.run();
  const s3Worker = await startWorker({
    env: {
      WORKER_CHECKPOINT_STORE: 's3://fleet/w',
      WORKER_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
    },
  });
  try {
    const s = await s3Worker.sessions.createSession({ workspaceId: 's3' });
    const bytes = randomBytes(4096);
    const upload = await s3Worker.artifacts.getUploadURL({
      sessionId: s.sessionId,
      artifactName: 'o.bin',
      contentType: 'application/octet-stream',
      sizeBytes: bytes.length,
    });
    assert.ok(upload.uploadUrl.startsWith(`http://127.0.0.1:${port}/fleet/w/artifacts/${upload.artifactId}`), upload.uploadUrl);
    const facts = {
      sessionId: s.sessionId,
      artifactId: upload.artifactId,
      artifactName: 'o.bin',
      artifactType: 'blob',
      sizeBytes: bytes.length,
      checksumSha256: sha256(bytes),
      metadata: {},
    };
    assert.equal(await statusOf(s3Worker.artifacts.recordArtifact(facts)), Status.NOT_FOUND);
    assert.equal(await put(upload.uploadUrl, bytes, 'application/octet-stream'), 200);
    assert.equal(await statusOf(s3Worker.artifacts.recordArtifact({ ...facts, checksumSha256: sha256(Buffer.from('no')) })), Status.INVALID_ARGUMENT);
    const receipt = await s3Worker.artifacts.recordArtifact(facts);
    assert.equal(receipt.storageUrl, `s3://fleet/w/artifacts/${upload.artifactId}`);
  } finally {
    await s3Worker.stop();
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  }
});
