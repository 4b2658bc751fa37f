// Where a store's objects live; no SDK here, so a worker without S3 never loads it.

/** Where objects live in an S3-compatible store (WORKER_CHECKPOINT_STORE, WORKER_S3_ENDPOINT). */
export interface S3Location {
  bucket: string;
  prefix: string;
  endpoint: string | undefined;
}

/** `s3://bucket/prefix` → its parts. */
export function parseS3Url(url: string, endpoint: string | undefined): S3Location {
  const parsed = new URL(url);
  return { bucket: parsed.hostname, prefix: parsed.pathname.replace(/^\/+|\/+$/g, ''), endpoint };
}
