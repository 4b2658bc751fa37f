import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  isCheckpointId,
  isCheckpointRecord,
  MissingArchiveError,
  readableRecords,
  type CheckpointRecord,
  type CheckpointStore,
  type FetchedArchive,
} from './checkpointStore.js';
import { createS3Client, isMissingObject, readJsonObject, writeJsonObject } from './s3Client.js';
import type { S3Location } from './s3Location.js';

/** `s3://bucket/prefix/<id>.zip` and `<id>.json` on any S3-compatible store. */
export class S3CheckpointStore implements CheckpointStore {
  private readonly client: S3Client;

  constructor(
    private readonly location: S3Location,
    private readonly localScratch: string,
  ) {
    this.client = createS3Client(location);
  }

  private key(name: string): string {
    return this.location.prefix ? `${this.location.prefix}/${name}` : name;
  }

  urlOf(checkpointId: string): string {
    return `s3://${this.location.bucket}/${this.key(`${checkpointId}.zip`)}`;
  }

  async scratchDir(): Promise<string> {
    await mkdir(this.localScratch, { recursive: true });
    return this.localScratch;
  }

  async save(record: CheckpointRecord, archive: string): Promise<void> {
    const { size } = await stat(archive);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.location.bucket,
        Key: this.key(`${record.checkpointId}.zip`),
        Body: createReadStream(archive),
        ContentLength: size,
        ContentType: 'application/zip',
      }),
    );
    await writeJsonObject(this.client, this.location.bucket, this.key(`${record.checkpointId}.json`), record);
    await rm(archive, { force: true });
  }

  async record(checkpointId: string): Promise<CheckpointRecord | undefined> {
    if (!isCheckpointId(checkpointId)) return undefined;
    return readJsonObject<CheckpointRecord>(this.client, this.location.bucket, this.key(`${checkpointId}.json`), isCheckpointRecord);
  }

  async fetch(checkpointId: string): Promise<FetchedArchive> {
    const dir = await mkdtemp(join(await this.scratchDir(), 'fetch-'));
    const release = () => rm(dir, { recursive: true, force: true });
    try {
      const path = join(dir, `${checkpointId}.zip`);
      const object = await this.client
        .send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(`${checkpointId}.zip`) }))
        .catch((err: unknown) => {
          throw isMissingObject(err) ? new MissingArchiveError(checkpointId) : err;
        });
      await pipeline(object.Body as Readable, createWriteStream(path));
      return { path, release };
    } catch (err) {
      await release();
      throw err;
    }
  }

  async list(): Promise<CheckpointRecord[]> {
    const ids: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.location.bucket,
          Prefix: this.location.prefix ? `${this.location.prefix}/` : undefined,
          ContinuationToken: token,
        }),
      );
      for (const object of page.Contents ?? []) {
        const name = object.Key?.split('/').pop() ?? '';
        if (name.endsWith('.json')) ids.push(name.slice(0, -5));
      }
      token = page.NextContinuationToken;
    } while (token);
    return readableRecords(ids, (id) => this.record(id));
  }

  async remove(checkpointId: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.key(`${checkpointId}.json`) }));
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.key(`${checkpointId}.zip`) }));
  }
}
