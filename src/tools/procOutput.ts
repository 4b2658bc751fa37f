import { StringDecoder } from 'node:string_decoder';
import { LogLevel } from '../../gen/codegen/v1/common.js';
import { setTimeout as delay } from 'node:timers/promises';
import type { OutputRing } from '../sandbox/process/outputRing.js';
import type { OutputSource } from '../sandbox/process/processSpec.js';
import type { BackgroundInfo } from '../sandbox/session/backgroundProcesses.js';
import { errors } from '../errors.js';
import { parseCount, parseEncoding, parseFlag, type Encoding } from './arguments.js';
import { defineTool, type ToolContext } from './tool.js';

/**
 * What a background process printed from byte offset `since` (both streams, as they came), and
 * with `follow` its output as it comes, as log messages, until it exits or the task is
 * cancelled; the process runs on either way.
 */
export const procOutput = defineTool({
  name: 'proc.output',
  kind: 'process',
  arguments: { required: ['process_id'], optional: ['since', 'follow', 'encoding'] },
  outputs: ['output', 'since', 'next', 'oldest', 'running', 'exit_code', 'killed_by'],
  parse({ process_id, since, follow, encoding }) {
    return {
      processId: process_id,
      since: parseCount('proc.output', 'since', since),
      follow: parseFlag('proc.output', 'follow', follow),
      encoding: parseEncoding('proc.output', encoding),
    };
  },
  async run({ processId, since, follow, encoding }, ctx) {
    const { output } = ctx.session.sandbox.background.output(processId);
    // Past what it printed: an offset of another process's (or a mistake); answering "nothing yet" would hide its output for good.
    if (since > output.next) throw errors.invalidArgument(`proc.output since ${since} is past the end of process ${processId}'s output (next ${output.next})`);
    let from = Math.max(since, output.oldest);
    if (follow) {
      const next = await followOutput(output, from, ctx);
      const { info } = ctx.session.sandbox.background.output(processId);
      return { ok: true, exitCode: 0, outputs: outputsOf(info, Buffer.alloc(0), encoding, from, next, output.oldest) };
    }
    // What it printed from `from` on, bounded by the ring; as text, whole characters only: one
    // cut by `since` (or by the ring) is skipped, one not yet printed whole is left for next time.
    let bytes = Buffer.concat(output.read(from).map((p) => p.bytes));
    if (encoding === 'utf-8') {
      const start = leadingContinuations(bytes);
      const end = output.closed ? bytes.length : completeUpTo(bytes);
      from += start;
      bytes = bytes.subarray(start, end);
    }
    const { info } = ctx.session.sandbox.background.output(processId);
    return { ok: true, exitCode: 0, outputs: outputsOf(info, bytes, encoding, from, from + bytes.length, output.oldest) };
  },
});

/** UTF-8 continuation bytes at the start (at most 3: the rest of a character cut off before). */
function leadingContinuations(bytes: Buffer): number {
  let n = 0;
  while (n < 3 && n < bytes.length && (bytes[n]! & 0xc0) === 0x80) n++;
  return n;
}

/** The length of `bytes` without a last UTF-8 character it holds only the start of. */
function completeUpTo(bytes: Buffer): number {
  for (let back = 1; back <= 4 && back <= bytes.length; back++) {
    const byte = bytes[bytes.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation: look further back for its lead
    const length = byte < 0x80 ? 1 : byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}

function outputsOf(info: BackgroundInfo, bytes: Buffer, encoding: Encoding, since: number, next: number, oldest: number): Record<string, string> {
  return {
    output: bytes.toString(encoding === 'base64' ? 'base64' : 'utf8'),
    since: String(since),
    next: String(next),
    oldest: String(oldest),
    running: String(info.running),
    ...(info.exitCode === undefined ? {} : { exit_code: String(info.exitCode) }),
    ...(info.killedBy === undefined ? {} : { killed_by: info.killedBy }),
  };
}

/** How often a follower sends what came meanwhile, at most (the run tools' pace). */
const FOLLOW_INTERVAL_MS = 20;
/** Characters one follow message holds at most. */
const FOLLOW_MAX_CHARS = 64 * 1024;

/**
 * Streams the ring's output from `from` as log messages until it ends or the task's signal
 * aborts; resolves the offset reached. Unlike the run tools' line messages, each message is a
 * piece of one stream exactly as printed (line endings included, a prompt without one too):
 * what a terminal shows, and the messages joined are the output.
 */
async function followOutput(output: OutputRing, from: number, ctx: ToolContext): Promise<number> {
  const decoders: Record<OutputSource, StringDecoder> = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  const send = (source: OutputSource, text: string) =>
    ctx.emit({
      kind: 'log',
      timestampMs: Date.now(),
      level: source === 'stderr' ? LogLevel.LOG_LEVEL_ERROR : LogLevel.LOG_LEVEL_INFO,
      message: text,
      source,
    });
  let cursor = from;
  let sentAt = -Infinity;
  while (!ctx.signal.aborted) {
    // Consecutive pieces of one stream go together; bytes the ring dropped meanwhile are skipped.
    let pending: { source: OutputSource; text: string } | undefined;
    for (const piece of output.read(cursor)) {
      const text = decoders[piece.source].write(piece.bytes);
      cursor = piece.offset + piece.bytes.length;
      if (pending && (pending.source !== piece.source || pending.text.length + text.length > FOLLOW_MAX_CHARS)) {
        await send(pending.source, pending.text);
        pending = undefined;
      }
      if (text.length > 0) pending = pending ? { source: pending.source, text: pending.text + text } : { source: piece.source, text };
    }
    if (pending) {
      await send(pending.source, pending.text);
      sentAt = performance.now();
    }
    if (output.closed && cursor >= output.next) break;
    await output.waitPast(cursor, ctx.signal);
    // Output after a quiet moment goes at once; within the interval of the last message, at its end.
    const wait = sentAt + FOLLOW_INTERVAL_MS - performance.now();
    if (wait > 0 && !ctx.signal.aborted && !output.closed) await delay(wait);
  }
  for (const source of ['stdout', 'stderr'] as const) {
    const rest = decoders[source].end();
    if (rest.length > 0) await send(source, rest);
  }
  return cursor;
}
