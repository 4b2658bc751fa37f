import { createHash } from 'node:crypto';

/** pip's index when WORKER_PIP_INDEX_URL is not set. */
export const DEFAULT_INDEX = 'https://pypi.org/simple/';
const PAGE_TIMEOUT_MS = 5000;
const MAX_PAGE_BYTES = 32 * 1024 * 1024;

/**
 * The SHA-256 of a project's page on the index (PEP 503), as the worker itself reads it; undefined
 * when it cannot be read. pip reads these pages afresh on every install (max-age=0), so a stored
 * resolution stands only while every page it came from reads the same.
 */
export async function indexPageDigest(indexUrl: string | undefined, project: string, signal?: AbortSignal): Promise<string | undefined> {
  const base = (indexUrl ?? DEFAULT_INDEX).replace(/\/*$/, '/');
  try {
    const timeout = AbortSignal.timeout(PAGE_TIMEOUT_MS);
    const response = await fetch(`${base}${encodeURIComponent(project)}/`, {
      headers: { accept: 'text/html', 'cache-control': 'max-age=0' },
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    if (!response.ok || !response.body) return undefined;
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      if (bytes > MAX_PAGE_BYTES) return undefined;
      hash.update(chunk);
    }
    return hash.digest('hex');
  } catch {
    return undefined;
  }
}
