import { StringDecoder } from 'node:string_decoder';
import { LogLevel } from '../../gen/codegen/v1/common.js';
import { OutputCoalescer } from '../sandbox/process/outputCoalescer.js';
import type { OutputRing } from '../sandbox/process/outputRing.js';
import type { OutputSource } from '../sandbox/process/processSpec.js';
import type { BackgroundInfo } from '../sandbox/session/backgroundProcesses.js';
import { parseCount, parseEncoding, parseFlag, type Encoding } from './arguments.js';
import { defineTool, type ToolContext } from './tool.js';

/** Longest line passed on as one log message; longer runs come in pieces. */
const MAX_LINE_CHARS = 64 * 1024;

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
    const from = Math.max(since, output.oldest);
    const next = follow ? await followOutput(output, from, ctx) : output.next;
    // What it printed from `from` to `next` (all of it when not following, bounded by the ring).
    const bytes = follow ? Buffer.alloc(0) : Buffer.concat(output.read(from).map((p) => p.bytes));
    const { info } = ctx.session.sandbox.background.output(processId);
    return { ok: true, exitCode: 0, outputs: outputsOf(info, bytes, encoding, from, next, output.oldest) };
  },
});

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

/** Streams the ring's output from `from` as log messages until it ends or the task's signal aborts; resolves the offset reached. */
async function followOutput(output: OutputRing, from: number, ctx: ToolContext): Promise<number> {
  const lines = new OutputCoalescer((source, text) =>
    ctx.emit({
      kind: 'log',
      timestampMs: Date.now(),
      level: source === 'stderr' ? LogLevel.LOG_LEVEL_ERROR : LogLevel.LOG_LEVEL_INFO,
      message: text,
      source,
    }),
  );
  const partial: Record<OutputSource, { decoder: StringDecoder; text: string }> = {
    stdout: { decoder: new StringDecoder('utf8'), text: '' },
    stderr: { decoder: new StringDecoder('utf8'), text: '' },
  };
  let cursor = from;
  try {
    while (!ctx.signal.aborted) {
      const pieces = output.read(cursor);
      // Bytes the ring dropped meanwhile (the process printed faster than the client read) are skipped.
      for (const piece of pieces) {
        const part = partial[piece.source];
        part.text += part.decoder.write(piece.bytes);
        const last = part.text.lastIndexOf('\n');
        if (last !== -1) {
          for (const line of part.text.slice(0, last).split('\n')) await lines.add(piece.source, line.endsWith('\r') ? line.slice(0, -1) : line);
          part.text = part.text.slice(last + 1);
        }
        while (part.text.length >= MAX_LINE_CHARS) {
          await lines.add(piece.source, part.text.slice(0, MAX_LINE_CHARS));
          part.text = part.text.slice(MAX_LINE_CHARS);
        }
        cursor = piece.offset + piece.bytes.length;
      }
      if (output.closed && cursor >= output.next) break;
      await output.waitPast(cursor, ctx.signal);
    }
    for (const source of ['stdout', 'stderr'] as const) {
      const rest = partial[source].text + partial[source].decoder.end();
      if (rest.length > 0) await lines.add(source, rest);
    }
    await lines.flush();
    return cursor;
  } finally {
    lines.close();
  }
}
