import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { ThreadCalls } from './threadCalls.js';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

/**
 * Raw deflate and inflate of whole buffers on threads of the worker's own (one per core, at most
 * four), started when first needed. Why not zlib's async calls: each makes a zlib stream, whose
 * set-up and events cost the event loop about as much as inflating a 25 kB file outright (measured:
 * 240 µs of the loop per async inflate against 237 µs for inflateRawSync); and not the sync calls
 * on the event loop: they would hold it for every byte of every checkpoint. Buffers travel as
 * copies (a pooled Buffer's memory must not be transferred). Buffers under SMALL_BYTES are done
 * in place: a message costs more.
 */

const SMALL_BYTES = 2048;
const THREADS = Math.max(1, Math.min(4, availableParallelism()));

/** What each thread runs: compressionThread.cjs, read once from the checkout (this module runs from dist/). */
const SOURCE = readFileSync(new URL('../../../src/storage/compressionThread.cjs', import.meta.url), 'utf8');

/** A compression thread: raw deflate or inflate of one buffer per message (compressionThread.cjs). */
class CompressionThread {
  private readonly calls = new ThreadCalls(SOURCE, { eval: true }, (why) => new Error(`the compression thread stopped: ${why}`));

  get dead(): boolean {
    return this.calls.dead;
  }

  get waiting(): number {
    return this.calls.waiting;
  }

  /** Extracts `files` from the archive open as `source` (compressionThread.cjs says how); their descriptors are closed. */
  async extract(source: number, files: ExtractedFile[]): Promise<void> {
    const answer = (await this.calls.call({ op: 'extract', source, files })) as { error?: string; code?: string; format?: boolean };
    if (answer.error === undefined) return;
    if (answer.format) throw new EntryFormatError(answer.error);
    throw Object.assign(new Error(answer.error), answer.code === undefined ? {} : { code: answer.code });
  }

  async run(op: 'deflate' | 'inflate', data: Buffer, size: number): Promise<Buffer> {
    const { data: out, error } = (await this.calls.call({ op, data, size })) as { data?: Uint8Array; error?: string };
    if (error !== undefined || !out) throw new Error(error ?? 'no output');
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }
}

const threads: CompressionThread[] = [];

/** The least busy thread, a new one while there are fewer than THREADS (a dead one is replaced). */
function thread(): CompressionThread {
  threads.splice(0, threads.length, ...threads.filter((t) => !t.dead));
  const idle = threads.find((t) => t.waiting === 0);
  if (idle) return idle;
  if (threads.length < THREADS) {
    const fresh = new CompressionThread();
    threads.push(fresh);
    return fresh;
  }
  return threads.reduce((a, b) => (b.waiting < a.waiting ? b : a));
}

/** An entry extracted by extractFiles is not what its archive says (zipReader's ZipFormatError, to its caller). */
export class EntryFormatError extends Error {
  override name = 'EntryFormatError';
}

/** An archive entry to extract into a file the worker made: where its bytes are, what they must be, where they go. */
export interface ExtractedFile {
  /** The entry's name, quoted, for errors. */
  name: string;
  localOffset: number;
  compressedSize: number;
  size: number;
  method: number;
  crc: number;
  /** The file, open for writing: handed over (closed by the thread, whatever happens). */
  fd: number;
  /** Its modification time as futimes seconds, when the entry has one. */
  mtime?: string | undefined;
}

/**
 * Entries read, inflated, checked and written into their files on a compression thread, with
 * synchronous calls: per file, no trip through the event loop (each read, inflate and write was
 * one, and the event loop, not the CPU, bounded a restore). Rejects with an EntryFormatError when an
 * entry is not what the archive says, with the system call's error otherwise. The descriptors
 * are the thread's from the call on, closed by it in any case; if the thread itself dies, those
 * not yet closed stay open (closing them here could close another's descriptor of that number).
 */
export function extractFiles(source: number, files: ExtractedFile[]): Promise<void> {
  return thread().extract(source, files);
}

/** Raw deflate at level 1 (speed over the last few percent: checkpoints are made while the session waits). */
export function deflateLevel1(data: Buffer): Promise<Buffer> {
  if (data.length < SMALL_BYTES) return Promise.resolve(deflateRawSync(data, { level: 1 }));
  return thread().run('deflate', data, 0);
}

/** Raw inflate of at most `size` bytes (more is an error: the entry is not what it says). */
export function inflateAtMost(data: Buffer, size: number): Promise<Buffer> {
  const limit = Math.max(1, size);
  if (data.length < SMALL_BYTES && size < SMALL_BYTES) {
    return new Promise((resolve) => resolve(inflateRawSync(data, { maxOutputLength: limit })));
  }
  return thread().run('inflate', data, limit);
}
