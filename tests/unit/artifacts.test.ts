import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import type { ArtifactMetadata } from '../../gen/codegen/v1/artifact_service.js';
import { Artifacts } from '../../src/artifacts/artifacts.js';
import { UrlSigner } from '../../src/storage/urlSigner.js';
import { errors, WorkerError } from '../../src/errors.js';
import type { ArtifactSessions } from '../../src/artifacts/artifacts.js';
import { LocalArtifactStore } from '../../src/storage/artifactStore.js';

// GetUploadURL's and RecordArtifact's rules over a local store in a temporary directory and a
// stand-in pool of one session.

const dir = await mkdtemp(join(tmpdir(), 'unit-artifact-facts-'));
after(() => rm(dir, { recursive: true, force: true }));
const store = new LocalArtifactStore(dir, new UrlSigner(Buffer.alloc(32, 9)), () => 'http://worker.example:50053', 60_000);
let persisted = 0;
const session = {
  id: 'session-1',
  artifacts: [] as string[],
  async recordArtifact(id: string) {
    if (this.artifacts.includes(id)) return;
    this.artifacts.push(id);
    persisted++;
  },
};
const pool = {
  get: (id: string) => {
    if (id !== session.id) throw errors.sessionNotFound(id);
    return session;
  },
} satisfies ArtifactSessions;
const artifacts = new Artifacts({ store, pool, maxBytes: 1000, uploadTtlMs: 60_000 });

const rejectsWith = (code: Status, pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === code && pattern.test(err.details);

test('an upload URL is granted for a known session, a name, a media type and a size within the limit', async () => {
  const before = Date.now();
  const granted = await artifacts.uploadUrl('session-1', 'report.csv', 'text/csv; charset=utf-8', 100);
  assert.match(granted.artifactId, /^artifact-/);
  assert.ok(granted.expiresAtMs >= before + 60_000);
  const url = new URL(granted.uploadUrl);
  assert.equal(url.origin, 'http://worker.example:50053');
  assert.equal(url.pathname, `/artifacts/${granted.artifactId}`);
  assert.deepEqual(
    [url.searchParams.get('size'), url.searchParams.get('type'), url.searchParams.get('session')],
    ['100', 'text/csv; charset=utf-8', 'session-1'],
  );
  assert.match(url.searchParams.get('signature')!, /^[0-9a-f]{64}$/);
  await artifacts.uploadUrl('session-1', 'a', '', 1); // no content type at all is fine
});

test('upload URLs are refused for unknown sessions, nameless artifacts, non-media types and bad sizes', async () => {
  await assert.rejects(artifacts.uploadUrl('session-x', 'a', '', 1), rejectsWith(Status.NOT_FOUND, /session not found/));
  await assert.rejects(artifacts.uploadUrl('session-1', '', '', 1), rejectsWith(Status.INVALID_ARGUMENT, /artifact_name is required/));
  for (const type of ['text', 'text/', '/csv', 'text/csv; charset', 'text/csv\r\nx-evil: 1', `a/${'b'.repeat(300)}`]) {
    await assert.rejects(artifacts.uploadUrl('session-1', 'a', type, 1), rejectsWith(Status.INVALID_ARGUMENT, /is not a media type/), JSON.stringify(type));
  }
  await artifacts.uploadUrl('session-1', 'a', 'multipart/form-data; boundary="a b"', 1);
  for (const size of [0, -1, Number.NaN])
    await assert.rejects(artifacts.uploadUrl('session-1', 'a', '', size), rejectsWith(Status.INVALID_ARGUMENT, /size_bytes must be positive/), String(size));
  await assert.rejects(
    artifacts.uploadUrl('session-1', 'a', '', 1001),
    rejectsWith(Status.INVALID_ARGUMENT, /over this worker's artifact limit of 1000 bytes \(WORKER_MAX_ARTIFACT_MB\)/),
  );
});

async function upload(bytes: string, sessionId = 'session-1'): Promise<{ artifactId: string; sha256: string }> {
  const { artifactId, expiresAtMs } = await artifacts.uploadUrl('session-1', 'a', '', 1000);
  assert.equal(
    await store.receive({ artifactId, sessionId, maxBytes: 1000, contentType: '', expiresAtMs }, Readable.from([Buffer.from(bytes)]), Buffer.byteLength(bytes)),
    'stored',
  );
  return { artifactId, sha256: createHash('sha256').update(bytes).digest('hex') };
}

const facts = (artifactId: string, sha256: string, over: Partial<ArtifactMetadata> = {}): ArtifactMetadata => ({
  artifactId,
  sessionId: 'session-1',
  artifactName: 'out.txt',
  artifactType: 'text',
  sizeBytes: 5,
  checksumSha256: sha256,
  metadata: { k: 'v' },
  ...over,
});

test('recording checks the uploaded bytes against the stated size and checksum, then lists the artifact on its session', async () => {
  const { artifactId, sha256 } = await upload('hello');
  await assert.rejects(
    artifacts.record(facts(artifactId, sha256, { sizeBytes: 6 })),
    rejectsWith(Status.INVALID_ARGUMENT, /size_bytes 6 does not match the 5 bytes uploaded/),
  );
  await assert.rejects(
    artifacts.record(facts(artifactId, '0'.repeat(64))),
    rejectsWith(Status.INVALID_ARGUMENT, /checksum_sha256 does not match the uploaded bytes/),
  );
  await assert.rejects(artifacts.record(facts(artifactId, 'xyz')), rejectsWith(Status.INVALID_ARGUMENT, /checksum_sha256 must be 64 hexadecimal digits/));
  const before = persisted;
  const recorded = await artifacts.record(facts(artifactId, sha256.toUpperCase()));
  assert.equal(recorded.artifactId, artifactId);
  assert.match(recorded.storageUrl, new RegExp(`^http://worker\\.example:50053/artifacts/${artifactId}\\?expires=\\d+&signature=[0-9a-f]{64}$`));
  assert.deepEqual(
    session.artifacts.filter((a) => a === artifactId),
    [artifactId],
  );
  assert.equal(persisted, before + 1, 'the session record is written');
  assert.equal((await store.record(artifactId))?.checksumSha256, sha256, 'kept in lower case');
});

test('recording again with the same facts answers the same; with other facts ALREADY_EXISTS', async () => {
  const { artifactId, sha256 } = await upload('again');
  const first = await artifacts.record(facts(artifactId, sha256));
  const same = await artifacts.record(facts(artifactId, sha256.toUpperCase(), { metadata: { k: 'v' } }));
  assert.equal(same.recordedAtMs, first.recordedAtMs);
  assert.deepEqual(
    session.artifacts.filter((a) => a === artifactId),
    [artifactId],
    'listed once',
  );
  await assert.rejects(
    artifacts.record(facts(artifactId, sha256, { artifactName: 'other' })),
    rejectsWith(Status.ALREADY_EXISTS, /already recorded with other facts/),
  );
  await assert.rejects(artifacts.record(facts(artifactId, sha256, { metadata: { k: 'w' } })), rejectsWith(Status.ALREADY_EXISTS, /other facts/));
  await assert.rejects(artifacts.record(facts(artifactId, sha256, { metadata: { k: 'v', extra: '' } })), rejectsWith(Status.ALREADY_EXISTS, /other facts/));
});

test('nothing uploaded is NOT_FOUND; bytes uploaded for another session are refused', async () => {
  await assert.rejects(artifacts.record(facts('artifact-AAAAAAAAAAAAAAAAAAAAAA', '0'.repeat(64))), rejectsWith(Status.NOT_FOUND, /nothing was uploaded/));
  const { artifactId, sha256 } = await upload('other', 'session-2');
  await assert.rejects(artifacts.record(facts(artifactId, sha256)), rejectsWith(Status.INVALID_ARGUMENT, /was uploaded for another session/));
  await assert.rejects(artifacts.record(facts(artifactId, sha256, { sessionId: 'session-x' })), rejectsWith(Status.NOT_FOUND, /session not found/));
});
