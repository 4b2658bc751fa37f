import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export class TooManyBytesError extends Error {
  override name = 'TooManyBytesError';
}

/** A pass-through that takes the sha256 and the size of what flows through it; past `maxBytes` it fails. */
export class HashingStream extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;

  constructor(private readonly maxBytes = Infinity) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null, chunk?: Buffer) => void): void {
    this.size += chunk.length;
    if (this.size > this.maxBytes) return done(new TooManyBytesError(`more than ${this.maxBytes} bytes`));
    this.hash.update(chunk);
    done(null, chunk);
  }

  /** The hex sha256 of everything passed (once the stream has ended). */
  sha256(): string {
    return this.hash.digest('hex');
  }
}

/** The sha256 and size of a whole stream, read to its end. */
export async function hashOf(source: Readable): Promise<{ sha256: string; size: number }> {
  const hasher = new HashingStream();
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  await pipeline(source, hasher, discard);
  return { sha256: hasher.sha256(), size: hasher.size };
}
