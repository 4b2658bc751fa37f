import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * A process's output is a socket, and every write the process makes is its own small piece
 * in the kernel: a task printing short lines unbuffered as fast as it can makes the worker
 * read a few hundred bytes at a time, thousands of times a second, a core of the worker's one
 * event loop that every session shares. Paced, the pieces wait in the kernel (whose buffer
 * stops the writer when full, which is the process's own time) and one read takes them all.
 */

/** Small reads taken at once before pacing starts; a call's own few reads are never paced. */
export const READ_BURST = 16;
/** The gap between paced small reads: at most 1000 / READ_GAP_MS of them a second. */
export const READ_GAP_MS = 2;
/** A read at least this big is worth its cost and takes nothing from the burst. */
export const BIG_READ_BYTES = 16 * 1024;

/** The time and the waits pacing uses: the host's, or a test's fake. */
export interface ReadClock {
  now(): number;
  pause(ms: number): Promise<unknown>;
}

const hostClock: ReadClock = { now: () => performance.now(), pause: delay };

/**
 * Holds the socket to reading from the kernel only when its reader asks (one read ahead of
 * it at most): a readable stream reads ahead until it holds its high-water mark, and a
 * socket's is 16 KiB, which small pieces take hundreds of reads to fill. Node's sockets have no option for it once made (a
 * child's stdio is made by spawn), so the mark is set on the stream's state, which Node
 * checks at every read; pacedReads.test.ts fails if a Node release stops honouring it.
 */
export function readOnlyWhenAsked(stream: Readable): void {
  const state = (stream as unknown as { _readableState?: { highWaterMark: number } })._readableState;
  if (state) state.highWaterMark = 1;
}

/**
 * The stream's chunks, in order, all of them: read as they come while they come big or few,
 * or while `paced()` says no one else needs the worker; else one read per READ_GAP_MS, each
 * taking what gathered meanwhile.
 */
export async function* pacedReads(stream: Readable, paced: () => boolean, clock: ReadClock = hostClock): AsyncGenerator<Buffer> {
  readOnlyWhenAsked(stream);
  let burst = READ_BURST;
  let lastRead = clock.now();
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    yield chunk;
    const now = clock.now();
    burst = Math.min(READ_BURST, burst + (now - lastRead) / READ_GAP_MS);
    lastRead = now;
    if (chunk.length >= BIG_READ_BYTES || !paced()) continue;
    if (burst >= 1) {
      burst -= 1;
    } else {
      await clock.pause(READ_GAP_MS);
      lastRead = clock.now(); // the pause earns no read of its own
    }
  }
}
