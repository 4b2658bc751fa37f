import type { OutputSource } from './processSpec.js';

/** Pieces of one stream that come one after the other join up to this size. */
const MERGED_BYTES = 4096;

/** A piece of what a process printed, at its byte offset in everything it printed. */
export interface OutputPiece {
  offset: number;
  source: OutputSource;
  bytes: Buffer;
}

/**
 * What a long-running process printed, both streams in the order they came, bounded: the
 * oldest bytes go first past `maxBytes`. Offsets count every byte ever printed, so a reader that
 * asks from where it left off sees what it missed, and from where the kept bytes begin.
 */
export class OutputRing {
  private readonly pieces: OutputPiece[] = [];
  private keptBytes = 0;
  /** Bytes printed so far: the offset the next byte gets. */
  private end = 0;
  private ended = false;
  private readonly waiting = new Set<() => void>();

  constructor(private readonly maxBytes: number) {}

  /** The offset of the oldest byte kept. */
  get oldest(): number {
    return this.end - this.keptBytes;
  }

  /** The offset the next byte will have. */
  get next(): number {
    return this.end;
  }

  /** Whether no more output comes. */
  get closed(): boolean {
    return this.ended;
  }

  append(source: OutputSource, bytes: Buffer): void {
    if (bytes.length === 0 || this.ended) return;
    // A piece larger than the whole ring keeps its last bytes only.
    const kept = bytes.length > this.maxBytes ? bytes.subarray(bytes.length - this.maxBytes) : bytes;
    const last = this.pieces.at(-1);
    // Small pieces of one stream join the one before: a process writing a byte at a time would
    // otherwise cost a piece (an object and a buffer, hundreds of bytes) per byte it keeps.
    if (last && last.source === source && kept === bytes && last.bytes.length + bytes.length <= MERGED_BYTES) {
      last.bytes = Buffer.concat([last.bytes, bytes]);
    } else {
      this.pieces.push({ offset: this.end + bytes.length - kept.length, source, bytes: kept });
    }
    this.end += bytes.length;
    this.keptBytes += kept.length;
    while (this.keptBytes > this.maxBytes) {
      const first = this.pieces[0]!;
      const over = this.keptBytes - this.maxBytes;
      if (first.bytes.length <= over) {
        this.pieces.shift();
        this.keptBytes -= first.bytes.length;
      } else {
        this.pieces[0] = { offset: first.offset + over, source: first.source, bytes: first.bytes.subarray(over) };
        this.keptBytes -= over;
      }
    }
    this.wake();
  }

  /** No more output comes (the process exited); readers waiting are woken. */
  close(): void {
    this.ended = true;
    this.wake();
  }

  /** The pieces kept from `since` on (from the oldest kept when `since` is older), at most `maxBytes` of them. */
  read(since: number, maxBytes = Infinity): OutputPiece[] {
    const out: OutputPiece[] = [];
    let budget = maxBytes;
    for (const piece of this.pieces) {
      const pieceEnd = piece.offset + piece.bytes.length;
      if (pieceEnd <= since || budget <= 0) continue;
      const skip = Math.max(0, since - piece.offset);
      const bytes = piece.bytes.subarray(skip, skip + budget);
      out.push({ offset: piece.offset + skip, source: piece.source, bytes });
      budget -= bytes.length;
    }
    return out;
  }

  /** Resolves once there is output past `offset`, the output ends, or `signal` aborts. */
  waitPast(offset: number, signal: AbortSignal): Promise<void> {
    if (this.end > offset || this.ended || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiting.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiting.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private wake(): void {
    for (const done of [...this.waiting]) done();
  }
}
