import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { parseRecord } from './jsonFile.js';
import type { S3Location } from './s3Location.js';

/** One S3 client setup for every store: the usual AWS credentials, path style for other endpoints. */
export function createS3Client(location: S3Location): S3Client {
  return new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(location.endpoint ? { endpoint: location.endpoint, forcePathStyle: true } : {}),
    // Many S3-compatible servers do not speak the SDK's newer default checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Whether an S3 error says the object is not there. */
export function isMissingObject(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

/** A JSON object's value; undefined when there is no such object, DamagedRecordError when it is not a valid one. */
export async function readJsonObject<T>(client: S3Client, bucket: string, key: string, isValid: (value: unknown) => boolean): Promise<T | undefined> {
  let raw: string;
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    raw = await object.Body!.transformToString();
  } catch (err) {
    if (isMissingObject(err)) return undefined;
    throw err;
  }
  return parseRecord<T>(raw, isValid);
}

export async function writeJsonObject(client: S3Client, bucket: string, key: string, value: unknown): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: JSON.stringify(value, null, 2), ContentType: 'application/json' }));
}
