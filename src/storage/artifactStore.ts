import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { UrlSigner } from './urlSigner.js';
import { hasFields, readJsonFile, writeJsonAtomically } from './jsonFile.js';
import { INCOMING } from './dataDirectory.js';
import { HashingStream, TooManyBytesError } from './hashingStream.js';
import { pathExists } from './pathExists.js';

/** What a signed upload URL allows: one PUT of at most maxBytes of contentType until expiresAtMs. */
export interface UploadGrant {
  artifactId: string;
  sessionId: string;
  maxBytes: number;
  contentType: string;
  expiresAtMs: number;
}

/** A recorded artifact. */
export interface ArtifactRecord {
  artifactId: string;
  sessionId: string;
  artifactName: string;
  artifactType: string;
  sizeBytes: number;
  checksumSha256: string;
  metadata: Record<string, string>;
  recordedAtMs: number;
}

export interface UploadedBytes {
  sizeBytes: number;
  sha256: string;
  sessionId: string | undefined;
}

/** Artifact bytes and records, behind one interface for the local directory and S3. */
export interface ArtifactStore {
  uploadUrl(grant: UploadGrant): Promise<string>;
  /** What was uploaded for an artifact, or undefined when nothing was. */
  uploaded(artifactId: string): Promise<UploadedBytes | undefined>;
  record(artifactId: string): Promise<ArtifactRecord | undefined>;
  saveRecord(record: ArtifactRecord): Promise<void>;
  /** Where a coordinator reads the artifact. */
  storageUrl(record: ArtifactRecord): string;
  /** Removes artifacts (recorded or not) older than the given age; returns how many. */
  sweep(olderThanMs: number): Promise<number>;
}

export const isArtifactRecord = hasFields({
  artifactId: 'string',
  sessionId: 'string',
  artifactName: 'string',
  sizeBytes: 'number',
  checksumSha256: 'string',
  metadata: 'object',
  recordedAtMs: 'number',
});
const isUploadedBytes = hasFields({ sizeBytes: 'number', sha256: 'string' });

export const ARTIFACT_ID = /^artifact-[A-Za-z0-9_-]{16,64}$/;

export function newArtifactId(): string {
  return `artifact-${randomBytes(16).toString('base64url')}`;
}

/** The fields an upload URL signs, in order. */
export function uploadFields(grant: UploadGrant): string[] {
  return ['PUT', grant.artifactId, grant.sessionId, String(grant.maxBytes), grant.contentType, String(grant.expiresAtMs)];
}

export function downloadFields(artifactId: string, expiresAtMs: number): string[] {
  return ['GET', artifactId, String(expiresAtMs)];
}

export type UploadOutcome = 'stored' | 'exists' | 'too_large' | 'incomplete';

/**
 * `<data dir>/artifacts/<id>.bin` (the bytes), `<id>.upload.json` (size, sha256 and session of
 * what was uploaded) and `<id>.json` (the record). Uploads arrive through the worker's HTTP
 * endpoint (http/artifactRequests.ts) at URLs this store signs.
 */
export class LocalArtifactStore implements ArtifactStore {
  constructor(
    private readonly dir: string,
    private readonly signer: UrlSigner,
    private readonly publicUrl: () => string,
    private readonly downloadTtlMs: number,
  ) {}

  private path(artifactId: string, suffix: string): string {
    return join(this.dir, `${artifactId}${suffix}`);
  }

  async uploadUrl(grant: UploadGrant): Promise<string> {
    const url = new URL(`/artifacts/${grant.artifactId}`, this.publicUrl());
    url.searchParams.set('session', grant.sessionId);
    url.searchParams.set('size', String(grant.maxBytes));
    url.searchParams.set('type', grant.contentType);
    url.searchParams.set('expires', String(grant.expiresAtMs));
    url.searchParams.set('signature', this.signer.sign(uploadFields(grant)));
    return url.href;
  }

  /**
   * Streams an upload to a temporary file, hashing it, and keeps it only when it arrived whole
   * and within its size; nothing is left behind otherwise.
   */
  async receive(grant: UploadGrant, body: Readable, declaredLength: number | undefined): Promise<UploadOutcome> {
    await mkdir(join(this.dir, INCOMING), { recursive: true });
    // One PUT per URL: the first to create the claim receives; any other at the same time, or
    // after it succeeded, is told so. A failed upload gives the claim back.
    const claim = await open(this.path(grant.artifactId, '.claim'), 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') return undefined;
      throw err;
    });
    if (!claim) return 'exists';
    await claim.close();
    // Stored before claims existed: as taken.
    if (await pathExists(this.path(grant.artifactId, '.bin'))) return 'exists';
    const temporary = join(this.dir, '.incoming', `${grant.artifactId}.${randomBytes(6).toString('hex')}`);
    const counter = new HashingStream(grant.maxBytes);
    try {
      // Opened before any of the body is taken: a write stream opening its file as it starts
      // could make it after a refusal of the first bytes had removed it, and leave it behind.
      const file = await open(temporary, 'wx', 0o600);
      // The body is not destroyed when the upload is refused part way: the answer then reads the
      // rest so the client sees it (http/httpServer.ts reply).
      await pipeline(body.iterator({ destroyOnReturn: false }), counter, file.createWriteStream());
      if (declaredLength !== undefined && counter.size !== declaredLength) throw new Error('upload ended early');
      if ((body as { complete?: boolean }).complete === false) throw new Error('upload ended early');
      await writeJsonAtomically(this.path(grant.artifactId, '.upload.json'), { sizeBytes: counter.size, sha256: counter.sha256(), sessionId: grant.sessionId });
      await rename(temporary, this.path(grant.artifactId, '.bin'));
      return 'stored';
    } catch (err) {
      await rm(temporary, { force: true });
      await rm(this.path(grant.artifactId, '.upload.json'), { force: true });
      await rm(this.path(grant.artifactId, '.claim'), { force: true });
      return err instanceof TooManyBytesError ? 'too_large' : 'incomplete';
    }
  }

  async uploaded(artifactId: string): Promise<UploadedBytes | undefined> {
    if (!ARTIFACT_ID.test(artifactId)) return undefined;
    if (!(await pathExists(this.path(artifactId, '.bin')))) return undefined;
    return readJsonFile<UploadedBytes>(this.path(artifactId, '.upload.json'), isUploadedBytes);
  }

  async record(artifactId: string): Promise<ArtifactRecord | undefined> {
    if (!ARTIFACT_ID.test(artifactId)) return undefined;
    return readJsonFile<ArtifactRecord>(this.path(artifactId, '.json'), isArtifactRecord);
  }

  async saveRecord(record: ArtifactRecord): Promise<void> {
    await writeJsonAtomically(this.path(record.artifactId, '.json'), record);
  }

  storageUrl(record: ArtifactRecord): string {
    const expires = Date.now() + this.downloadTtlMs;
    const url = new URL(`/artifacts/${record.artifactId}`, this.publicUrl());
    url.searchParams.set('expires', String(expires));
    url.searchParams.set('signature', this.signer.sign(downloadFields(record.artifactId, expires)));
    return url.href;
  }

  /** The stored bytes of a recorded artifact, for the download endpoint. */
  async open(artifactId: string): Promise<{ stream: Readable; size: number; record: ArtifactRecord } | undefined> {
    const record = await this.record(artifactId);
    if (!record) return undefined;
    const { size } = await stat(this.path(artifactId, '.bin'));
    return { stream: createReadStream(this.path(artifactId, '.bin')), size, record };
  }

  async sweep(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    let removed = 0;
    for (const name of names.filter((n) => n.endsWith('.bin'))) {
      const id = name.slice(0, -4);
      const st = await stat(join(this.dir, name)).catch(() => undefined);
      if (!st || st.mtimeMs > cutoff) continue;
      for (const suffix of ['.json', '.upload.json', '.bin', '.claim']) await rm(this.path(id, suffix), { force: true });
      removed++;
    }
    return removed;
  }
}
