import type { ArtifactMetadata } from '../../gen/codegen/v1/artifact_service.js';
import { errors, quoted } from '../errors.js';
import type { Session } from '../sessions/session.js';
import { metrics } from '../telemetry/metrics.js';
import { newArtifactId, type ArtifactRecord, type ArtifactStore } from '../storage/artifactStore.js';

/** Where artifacts find the session they are recorded in (sessions/sessionPool.ts's SessionPool is one). */
export interface ArtifactSessions {
  get(sessionId: string): Pick<Session, 'recordArtifact'>;
}

export interface ArtifactsOptions {
  store: ArtifactStore;
  pool: ArtifactSessions;
  maxBytes: number;
  uploadTtlMs: number;
}

/** What RecordArtifact states about an uploaded artifact: the wire's ArtifactMetadata. */
export type ArtifactFacts = ArtifactMetadata;

/** Maps as maps: the same keys with the same values, in whatever order they came. */
function sameMap(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

const sameFacts = (record: ArtifactRecord, facts: ArtifactFacts) =>
  record.sessionId === facts.sessionId &&
  record.artifactName === facts.artifactName &&
  record.artifactType === facts.artifactType &&
  record.sizeBytes === facts.sizeBytes &&
  record.checksumSha256 === facts.checksumSha256.toLowerCase() &&
  sameMap(record.metadata, facts.metadata);

/** RFC 6838 media type, optionally with parameters: what a Content-Type header may say. */
const TOKEN = '[A-Za-z0-9!#$&^_.+-]+';
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(\\s*;\\s*${TOKEN}=(${TOKEN}|"[^"\\\\\\x00-\\x1f]*"))*$`);
const MAX_CONTENT_TYPE = 255;

/** Upload URLs and recorded artifacts of sessions. */
export class Artifacts {
  constructor(private readonly options: ArtifactsOptions) {}

  async uploadUrl(
    sessionId: string,
    artifactName: string,
    contentType: string,
    sizeBytes: number,
  ): Promise<{ uploadUrl: string; artifactId: string; expiresAtMs: number }> {
    this.options.pool.get(sessionId);
    if (!artifactName) throw errors.invalidArgument('artifact_name is required');
    if (contentType && (contentType.length > MAX_CONTENT_TYPE || !MEDIA_TYPE.test(contentType))) {
      throw errors.invalidArgument(`content_type ${quoted(contentType, 60)} is not a media type (type/subtype, at most ${MAX_CONTENT_TYPE} characters)`);
    }
    if (!(sizeBytes > 0)) throw errors.invalidArgument(`size_bytes must be positive, got ${sizeBytes}`);
    if (sizeBytes > this.options.maxBytes)
      throw errors.invalidArgument(`size_bytes ${sizeBytes} is over this worker's artifact limit of ${this.options.maxBytes} bytes (WORKER_MAX_ARTIFACT_MB)`);
    const grant = { artifactId: newArtifactId(), sessionId, maxBytes: sizeBytes, contentType, expiresAtMs: Date.now() + this.options.uploadTtlMs };
    return { uploadUrl: await this.options.store.uploadUrl(grant), artifactId: grant.artifactId, expiresAtMs: grant.expiresAtMs };
  }

  /** Checks the stored bytes against the facts, keeps the record, and lists the artifact on its session. */
  async record(facts: ArtifactFacts): Promise<{ artifactId: string; storageUrl: string; recordedAtMs: number }> {
    const session = this.options.pool.get(facts.sessionId);
    if (!/^[0-9a-fA-F]{64}$/.test(facts.checksumSha256)) throw errors.invalidArgument('checksum_sha256 must be 64 hexadecimal digits');
    const existing = await this.options.store.record(facts.artifactId);
    if (existing) {
      if (!sameFacts(existing, facts)) throw errors.artifactConflict(facts.artifactId);
      return { artifactId: existing.artifactId, storageUrl: this.options.store.storageUrl(existing), recordedAtMs: existing.recordedAtMs };
    }
    const uploaded = await this.options.store.uploaded(facts.artifactId);
    if (!uploaded) throw errors.nothingUploaded(facts.artifactId);
    if (uploaded.sessionId !== undefined && uploaded.sessionId !== facts.sessionId)
      throw errors.invalidArgument(`artifact ${quoted(facts.artifactId)} was uploaded for another session`);
    if (uploaded.sizeBytes !== facts.sizeBytes)
      throw errors.invalidArgument(`size_bytes ${facts.sizeBytes} does not match the ${uploaded.sizeBytes} bytes uploaded`);
    if (uploaded.sha256 !== facts.checksumSha256.toLowerCase())
      throw errors.invalidArgument(`checksum_sha256 does not match the uploaded bytes (${uploaded.sha256})`);
    const record: ArtifactRecord = { ...facts, checksumSha256: uploaded.sha256, recordedAtMs: Date.now() };
    await this.options.store.saveRecord(record);
    metrics.artifactBytes.inc(record.sizeBytes);
    await session.recordArtifact(record.artifactId);
    return { artifactId: record.artifactId, storageUrl: this.options.store.storageUrl(record), recordedAtMs: record.recordedAtMs };
  }
}
