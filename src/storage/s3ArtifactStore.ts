import type { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ARTIFACT_ID, isArtifactRecord, type ArtifactRecord, type ArtifactStore, type UploadedBytes, type UploadGrant } from './artifactStore.js';
import { hashOf } from './hashingStream.js';
import { createS3Client, isMissingObject, readJsonObject, writeJsonObject } from './s3Client.js';
import type { S3Location } from './s3Location.js';

/** Artifacts as objects `<prefix>/artifacts/<id>` (+ `.json` records) in an S3-compatible store. */
export class S3ArtifactStore implements ArtifactStore {
  private readonly client: S3Client;

  constructor(private readonly location: S3Location) {
    this.client = createS3Client(location);
  }

  private key(name: string): string {
    return [this.location.prefix, 'artifacts', name].filter(Boolean).join('/');
  }

  /** The store's own presigned PUT (it signs the exact length and type, so at most = exactly). */
  async uploadUrl(grant: UploadGrant): Promise<string> {
    const command = new PutObjectCommand({
      Bucket: this.location.bucket,
      Key: this.key(grant.artifactId),
      ContentType: grant.contentType || undefined,
      ContentLength: grant.maxBytes,
      Metadata: { session: grant.sessionId },
    });
    return getSignedUrl(this.client, command, { expiresIn: Math.max(1, Math.ceil((grant.expiresAtMs - Date.now()) / 1000)) });
  }

  async uploaded(artifactId: string): Promise<UploadedBytes | undefined> {
    if (!ARTIFACT_ID.test(artifactId)) return undefined;
    try {
      // One GET gives the size, the session and (streamed through a hash) the checksum.
      const object = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(artifactId) }));
      const { sha256, size } = await hashOf(object.Body as Readable);
      return { sizeBytes: size, sha256, sessionId: object.Metadata?.session };
    } catch (err) {
      if (isMissingObject(err)) return undefined;
      throw err;
    }
  }

  async record(artifactId: string): Promise<ArtifactRecord | undefined> {
    if (!ARTIFACT_ID.test(artifactId)) return undefined;
    return readJsonObject<ArtifactRecord>(this.client, this.location.bucket, this.key(`${artifactId}.json`), isArtifactRecord);
  }

  async saveRecord(record: ArtifactRecord): Promise<void> {
    await writeJsonObject(this.client, this.location.bucket, this.key(`${record.artifactId}.json`), record);
  }

  storageUrl(record: ArtifactRecord): string {
    return `s3://${this.location.bucket}/${this.key(record.artifactId)}`;
  }

  async sweep(): Promise<number> {
    return 0; // object lifetimes belong to the bucket's lifecycle rules
  }
}
