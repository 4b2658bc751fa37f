import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UrlSigner } from '../../src/storage/urlSigner.js';
import { artifactRoutes } from '../../src/http/artifactRequests.js';
import { startHttpServer } from '../../src/http/httpServer.js';
import type { Logger } from '../../src/logger.js';
import { LocalArtifactStore, newArtifactId, type UploadGrant } from '../../src/storage/artifactStore.js';
import { putFromThread } from '../helpers/uploadThread.js';

// Signed upload and download URLs against a real HTTP server on loopback and a store in a
// temporary directory.

const dir = await mkdtemp(join(tmpdir(), 'unit-artifacts-'));
const signer = new UrlSigner(Buffer.alloc(32, 3));
let port = 0;
const store = new LocalArtifactStore(dir, signer, () => `http://127.0.0.1:${port}`, 60_000);
const server = await startHttpServer('127.0.0.1:0', [artifactRoutes(store, signer)], { tls: undefined, maxConnections: 1024 }, {
  error: () => undefined,
} as unknown as Logger);
port = server.port;
after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(url: string, method: string, body?: string, headers: Record<string, string> = {}, chunked = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, headers: { ...(body !== undefined && !chunked ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const grant = (over: Partial<UploadGrant> = {}): UploadGrant => ({
  artifactId: newArtifactId(),
  sessionId: 'session-1',
  maxBytes: 10,
  contentType: 'text/plain',
  expiresAtMs: Date.now() + 60_000,
  ...over,
});
const message = (answer: Answer) => (JSON.parse(answer.body) as { message: string }).message;

test('one PUT to a signed upload URL stores the bytes with their size, checksum and session; a second is 409', async () => {
  const g = grant();
  const url = await store.uploadUrl(g);
  assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${port}/artifacts/${g.artifactId}\\?`));
  const stored = await send(url, 'PUT', 'hello', { 'content-type': 'text/plain' });
  assert.equal(stored.status, 200, stored.body);
  assert.deepEqual(await store.uploaded(g.artifactId), { sizeBytes: 5, sha256: createHash('sha256').update('hello').digest('hex'), sessionId: 'session-1' });
  const again = await send(url, 'PUT', 'other', { 'content-type': 'text/plain' });
  assert.equal(again.status, 409);
  assert.match(message(again), /already uploaded/);
});

test('a URL changed in any signed field is 403 and stores nothing', async () => {
  const g = grant();
  const url = new URL(await store.uploadUrl(g));
  for (const [field, value] of [
    ['size', '1000'],
    ['session', 'session-2'],
    ['type', 'text/html'],
    ['expires', String(g.expiresAtMs + 1)],
  ] as const) {
    const changed = new URL(url);
    changed.searchParams.set(field, value);
    const answer = await send(changed.href, 'PUT', 'hello', { 'content-type': changed.searchParams.get('type')! });
    assert.equal(answer.status, 403, field);
    assert.match(message(answer), /^bad signature/);
  }
  const unsigned = new URL(url);
  unsigned.searchParams.delete('signature');
  assert.equal((await send(unsigned.href, 'PUT', 'hello', { 'content-type': 'text/plain' })).status, 403);
  assert.equal(await store.uploaded(g.artifactId), undefined);
});

test('an expired URL, or a body of another content type than signed, is 403', async () => {
  const expired = await send(await store.uploadUrl(grant({ expiresAtMs: Date.now() - 1 })), 'PUT', 'hello', { 'content-type': 'text/plain' });
  assert.equal(expired.status, 403);
  assert.match(message(expired), /^expired/);
  const wrongType = await send(await store.uploadUrl(grant()), 'PUT', 'hello', { 'content-type': 'application/json' });
  assert.equal(wrongType.status, 403);
  assert.match(message(wrongType), /content-type must be text\/plain, as signed/);
});

test('a body over the signed size is 413, declared or not, and leaves nothing behind', async () => {
  const declared = grant();
  const big = await send(await store.uploadUrl(declared), 'PUT', 'x'.repeat(11), { 'content-type': 'text/plain' });
  assert.equal(big.status, 413);
  assert.match(message(big), /body of 11 bytes is over the 10 bytes/);
  const chunked = grant();
  const streamed = await send(await store.uploadUrl(chunked), 'PUT', 'y'.repeat(50), { 'content-type': 'text/plain' }, true);
  assert.equal(streamed.status, 413);
  for (const g of [declared, chunked]) assert.equal(await store.uploaded(g.artifactId), undefined);
  assert.deepEqual((await readdir(join(dir, '.incoming'))).length, 0, 'no partial upload left');
  // The claim was given back: the URL can still be used with a body that fits.
  assert.equal((await send(await store.uploadUrl(chunked), 'PUT', 'fits', { 'content-type': 'text/plain' })).status, 200);
});

test('a recorded artifact downloads with a signed URL, with its length and checksum; changed or unknown is refused', async () => {
  const g = grant({ contentType: '' });
  assert.equal((await send(await store.uploadUrl(g), 'PUT', 'payload')).status, 200);
  const uploaded = (await store.uploaded(g.artifactId))!;
  const record = {
    artifactId: g.artifactId,
    sessionId: 'session-1',
    artifactName: 'out.txt',
    artifactType: 'text',
    sizeBytes: uploaded.sizeBytes,
    checksumSha256: uploaded.sha256,
    metadata: {},
    recordedAtMs: Date.now(),
  };
  assert.equal((await send(store.storageUrl(record), 'GET')).status, 404, 'not downloadable before it is recorded');
  await store.saveRecord(record);
  assert.deepEqual(await store.record(g.artifactId), record);
  const download = await send(store.storageUrl(record), 'GET');
  assert.equal(download.status, 200);
  assert.equal(download.body, 'payload');
  assert.equal(download.headers['content-length'], '7');
  assert.equal(download.headers['x-checksum-sha256'], uploaded.sha256);

  const tampered = new URL(store.storageUrl(record));
  tampered.searchParams.set('expires', String(Date.now() + 10 * 365 * 24 * 3600 * 1000));
  assert.equal((await send(tampered.href, 'GET')).status, 403);
  assert.equal((await send(`http://127.0.0.1:${port}/artifacts/not-an-id`, 'GET')).status, 404);
  assert.equal((await send(`http://127.0.0.1:${port}/artifacts/${g.artifactId}/x`, 'GET')).status, 404);
  assert.equal((await send(store.storageUrl(record), 'DELETE')).status, 405);
});

test('sweep removes artifacts older than the retention, recorded or not, and keeps newer ones', async () => {
  const old = grant({ contentType: '' });
  const fresh = grant({ contentType: '' });
  for (const g of [old, fresh]) assert.equal((await send(await store.uploadUrl(g), 'PUT', 'z')).status, 200);
  const past = new Date(Date.now() - 10 * 3600 * 1000);
  await utimes(join(dir, `${old.artifactId}.bin`), past, past);
  const removed = await store.sweep(3600 * 1000);
  assert.ok(removed >= 1);
  assert.equal(await store.uploaded(old.artifactId), undefined);
  assert.ok(await store.uploaded(fresh.artifactId));
  assert.ok(!(await readdir(dir)).some((name) => name.startsWith(old.artifactId)), 'every file of it is gone');
});

test('ids that are not artifact ids are unknown to the store', async () => {
  assert.equal(await store.uploaded('../../etc/passwd'), undefined);
  assert.equal(await store.record('artifact-short'), undefined);
  assert.match(newArtifactId(), /^artifact-[A-Za-z0-9_-]{22}$/);
});

test('a client still sending its body sees why its upload was refused, not a reset connection', async () => {
  // Refused from the headers alone (too large, not signed) or part way (over the signed size
  // without a declared length), the answer goes out before the body has arrived; the client,
  // in a thread of its own as a real one would be, must still read it.
  for (let round = 0; round < 6; round++) {
    const tooLarge = await putFromThread(await store.uploadUrl(grant({ maxBytes: 1000 })), 48 << 20, { 'content-type': 'text/plain' });
    assert.deepEqual([tooLarge.status, tooLarge.error], [413, undefined], `round ${round}`);
    const unsigned = await putFromThread(`http://127.0.0.1:${port}/artifacts/${newArtifactId()}?size=1`, 48 << 20, { 'content-type': 'text/plain' });
    assert.deepEqual([unsigned.status, unsigned.error], [403, undefined], `round ${round}`);
    const streamed = await putFromThread(await store.uploadUrl(grant({ maxBytes: 1 << 20 })), 48 << 20, { 'content-type': 'text/plain' }, { chunked: true });
    assert.deepEqual([streamed.status, streamed.error], [413, undefined], `round ${round}`);
  }
});

test('with Expect: 100-continue a refused upload is answered before any of its body is sent; an accepted one is stored', async () => {
  const refused = await putFromThread(await store.uploadUrl(grant({ maxBytes: 1000 })), 8 << 20, { 'content-type': 'text/plain' }, { expectContinue: true });
  assert.deepEqual([refused.status, refused.sent], [413, 0]);
  const g = grant({ maxBytes: 3 << 20 });
  const stored = await putFromThread(await store.uploadUrl(g), 3 << 20, { 'content-type': 'text/plain' }, { expectContinue: true });
  assert.deepEqual([stored.status, stored.sent], [200, 3 << 20]);
  assert.equal((await store.uploaded(g.artifactId))?.sizeBytes, 3 << 20);
});

test('a refused request with no declared body is answered at once, whatever bytes follow it', async () => {
  // Found by tests/fuzz.test.ts: bytes after a GET's head are the next request, not a body to wait for.
  for (const method of ['GET', 'DELETE']) {
    const answer = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port, method, path: `/artifacts/${newArtifactId()}?size=1` }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
      });
      req.on('error', (err) => resolve(err.message));
      req.end(Buffer.from([194]));
    });
    assert.equal(answer, method === 'GET' ? '403' : '405', method);
  }
});
