import { request } from 'node:http';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

/**
 * An HTTP PUT from a thread of its own. A client in the server's own thread never races it:
 * the server's answer and close are handled between the client's writes, in order. A real
 * client writes while the server answers, which is what tests of early answers must show.
 */

export interface PutOptions {
  /** Send `Expect: 100-continue` and the body only once the server says so. */
  expectContinue?: boolean;
  /** No content-length: the body goes chunked. */
  chunked?: boolean;
}

export interface PutOutcome {
  /** The answer's status, when the client read one. */
  status?: number;
  /** The socket error the client saw instead (EPIPE, ECONNRESET). */
  error?: string;
  /** Body bytes handed to the socket. */
  sent: number;
}

interface Job {
  url: string;
  bytes: number;
  headers: Record<string, string>;
  options: PutOptions;
}

/** PUTs `bytes` bytes to `url` in 1 MB writes from a worker thread. */
export function putFromThread(url: string, bytes: number, headers: Record<string, string>, options: PutOptions = {}): Promise<PutOutcome> {
  const job: Job = { url, bytes, headers, options };
  const thread = new Worker(new URL(import.meta.url), { workerData: job });
  return new Promise((resolve, reject) => {
    thread.once('message', resolve);
    thread.once('error', reject);
  });
}

function put({ url, bytes, headers, options }: Job): Promise<PutOutcome> {
  return new Promise((resolve) => {
    let sent = 0;
    const length = options.chunked ? {} : { 'content-length': String(bytes) };
    const expect = options.expectContinue ? { expect: '100-continue' } : {};
    const req = request(url, { method: 'PUT', headers: { ...length, ...expect, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sent }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, sent }));
    const chunk = Buffer.alloc(1 << 20, 7);
    const pump = () => {
      while (sent < bytes) {
        const n = Math.min(bytes - sent, chunk.length);
        sent += n;
        if (!req.write(chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    if (options.expectContinue) req.once('continue', pump);
    else pump();
  });
}

if (!isMainThread && parentPort) parentPort.postMessage(await put(workerData as Job));
