import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * A process's output is a socket, and every write the process makes is its own small piece
 * in the kernel: a task printing short lines unbuffered as fast as it can makes the worker
 * read a few hundred bytes at a time, thousands of times a second, and every line read is
 * split, gathered and sent: work of the worker's one event loop, which every session shares.
 * Paced, the output waits in the kernel (whose buffer stops the writer when full, which is the
 * process's own time) and one read later takes what gathered.
 */

/** Reads (and lines, READ_LINES a read) taken at once before pacing starts: a call's own few reads are never paced. */
export const READ_BURST = 16;
/** The time one read costs while paced: at most 1000 / READ_GAP_MS of them a second. */
export const READ_GAP_MS = 2;
/** Lines that cost as much as a read: a read of many lines costs one read per READ_LINES of them. */
export const READ_LINES = 128;

/** The time and the waits pacing uses: the host's, or a test's fake. */
export interface ReadClock {
  now(): number;
  pause(ms: number): Promise<unknown>;
}

const hostClock: ReadClock = { now: () => performance.now(), pause: delay };

/**
 * Holds the socket to reading from the kernel only when its reader asks (one read ahead of
 * it at most): a readable stream reads ahead until it holds its high-water mark, and a
 * socket's is 16 KiB, which small pieces take hundreds of reads to fill. Node's sockets have
 * no option for it once made (a child's stdio is made by spawn), so the mark is set on the
 * stream's state, which Node checks at every read; pacedReads.test.ts fails if a Node release
 * stops honouring it.
 */
export function readOnlyWhenAsked(stream: Readable): void {
  const state = (stream as unknown as { _readableState?: { highWaterMark: number } })._readableState;
  if (state) state.highWaterMark = 1;
}

/**
 * How soon a stream's next read may go: at once while `paced()` says no other session needs the
 * worker, or while the burst lasts; else after the time its reads and lines cost (a token
 * bucket: READ_GAP_MS a read, one read per READ_LINES lines, READ_BURST at once).
 */
export class ReadPacer {
  private burst = READ_BURST;
  private lastRead: number;

  constructor(
    private readonly paced: () => boolean,
    private readonly clock: ReadClock = hostClock,
  ) {
    this.lastRead = clock.now();
  }

  /** After a read that held `lines` lines: a promise to await before the next read, or undefined (go at once). */
  after(lines: number): Promise<void> | undefined {
    const now = this.clock.now();
    this.burst = Math.min(READ_BURST, this.burst + (now - this.lastRead) / READ_GAP_MS);
    this.lastRead = now;
    if (!this.paced()) return undefined;
    this.burst -= 1 + Math.floor(lines / READ_LINES);
    if (this.burst >= 0) return undefined;
    // Owed: wait until the bucket is back at zero; the wait earns nothing more.
    const owed = -this.burst * READ_GAP_MS;
    return this.clock.pause(owed).then(() => {
      this.burst = 0;
      this.lastRead = this.clock.now();
    });
  }
}
