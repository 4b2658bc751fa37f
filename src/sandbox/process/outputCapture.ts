import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { OutputCoalescer } from './outputCoalescer.js';
import { ReadPacer, readOnlyWhenAsked } from './pacedReads.js';
import type { CapturedOutput, OutputSource, RunOptions } from './processSpec.js';

/** Longest line passed on; longer runs without a newline are passed in pieces. */
const MAX_LINE_CHARS = 64 * 1024;

/** The exit code a shell would report: the code, or 128+N for a process killed by signal N. */
export function exitCodeOf(code: number | null, signal: string | null): number {
  // The host's own numbering, every signal included: the child was killed on this host.
  return code ?? 128 + (signal ? ((constants.signals as Record<string, number | undefined>)[signal] ?? 0) : 0);
}

async function pump(
  stream: Readable,
  source: OutputSource,
  options: RunOptions,
  lines: OutputCoalescer,
  counted: (bytes: number) => void,
): Promise<CapturedOutput> {
  const decoder = new StringDecoder('utf8');
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let truncated = false;
  let pending = '';
  readOnlyWhenAsked(stream);
  const pacer = new ReadPacer(options.pacedReads ?? notPaced);
  for await (const chunk of endAtClose(stream)) {
    let lineCount = 0;
    counted(chunk.length);
    if (keptBytes < options.maxCaptureBytes) {
      const room = options.maxCaptureBytes - keptBytes;
      kept.push(chunk.length <= room ? chunk : chunk.subarray(0, room));
      keptBytes += Math.min(chunk.length, room);
      if (chunk.length > room) truncated = true;
    } else if (chunk.length > 0) {
      truncated = true;
    }
    pending += decoder.write(chunk);
    // The chunk's whole lines at once, awaiting only when the coalescer is full: a task printing
    // short lines as fast as it can would otherwise cost a turn of the event loop per line.
    const last = pending.lastIndexOf('\n');
    if (last !== -1) {
      const whole = pending.slice(0, last).split('\n');
      lineCount += whole.length;
      for (const line of whole) {
        const full = lines.add(source, line.endsWith('\r') ? line.slice(0, -1) : line);
        if (full) await full;
      }
      pending = pending.slice(last + 1);
    }
    while (pending.length >= MAX_LINE_CHARS) {
      const full = lines.add(source, pending.slice(0, MAX_LINE_CHARS));
      if (full) await full;
      pending = pending.slice(MAX_LINE_CHARS);
      lineCount++;
    }
    const paced = pacer.after(lineCount);
    if (paced) await paced;
  }
  pending += decoder.end();
  if (pending.length > 0) await lines.add(source, pending);
  return { text: Buffer.concat(kept).toString('utf8'), truncated };
}

const notPaced = () => false;

/** The stream's chunks; a stream cut off (destroyed, reset) ends there instead of failing. */
async function* endAtClose(stream: Readable): AsyncGenerator<Buffer> {
  try {
    yield* stream as AsyncIterable<Buffer>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ERR_STREAM_PREMATURE_CLOSE' && code !== 'ECONNRESET' && code !== 'EPIPE') throw err;
  }
}

export interface CapturedStreams {
  stdout: CapturedOutput;
  stderr: CapturedOutput;
  outputLimitExceeded: boolean;
}

/**
 * Reads a process's two output streams to their end: their lines to onOutput as they arrive,
 * gathered into few calls (outputCoalescer.ts; reading pauses while a full one waits), the
 * first maxCaptureBytes of each kept, and `overLimit` called once when both together pass
 * maxOutputBytes. Every line has been passed on when it resolves.
 */
export async function captureOutput(stdout: Readable, stderr: Readable, options: RunOptions, overLimit: () => void): Promise<CapturedStreams> {
  let outputBytes = 0;
  let outputLimitExceeded = false;
  const counted = (bytes: number) => {
    outputBytes += bytes;
    if (options.maxOutputBytes && outputBytes > options.maxOutputBytes && !outputLimitExceeded) {
      outputLimitExceeded = true;
      overLimit();
    }
  };
  const lines = new OutputCoalescer(options.onOutput);
  const out = pump(stdout, 'stdout', options, lines, counted);
  const err = pump(stderr, 'stderr', options, lines, counted);
  err.catch(() => undefined); // awaited below; never unhandled
  try {
    const captured = { stdout: await out, stderr: await err, outputLimitExceeded };
    await lines.flush();
    return captured;
  } finally {
    lines.close();
  }
}
