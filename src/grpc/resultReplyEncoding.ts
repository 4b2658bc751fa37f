import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import type { TaskResponse, TaskResult } from '../../gen/codegen/v1/task_execution.js';
import { carriesTextBytes, textBytesOf, type TextBytes } from '../tools/textBytes.js';
import { framedRepliesApplied, withFrame } from './framedReplies.js';

// Tags (field number << 3 | wire type 2) of proto/codegen/v1/task_execution.proto's fields
// written here; tests/unit/resultReplyEncoding.test.ts holds the bytes to the generated encoder's.
const TASK_ID = (1 << 3) | 2;
const RESULT = (4 << 3) | 2;
const OUTPUT = (2 << 3) | 2;
const KEY = (1 << 3) | 2;
const VALUE = (2 << 3) | 2;
const ERROR = (3 << 3) | 2;

/** Output values from this size on make a result worth encoding here. */
const LARGE_OUTPUT_CHARS = 64 * 1024;

/** A length-delimited piece: a string field, a string field carried as bytes, or a message of pieces. */
type Piece =
  | { tag: number; text: string; bytes: number }
  | { tag: number; carried: TextBytes; bytes: number }
  | { tag: number; pieces: (Piece | Uint8Array)[]; bytes: number };

/** gRPC's message header: a compression flag and the length. */
const FRAME_HEADER = 5;

/** A reply carrying a result with a large output, or one carried as bytes (fs.read's contents), encoded by encodeResultReply; undefined for any other. */
export function encodeLargeResultReply(reply: TaskResponse): ArrayBuffer | undefined {
  const payload = reply.payload;
  if (payload?.$case !== 'result') return undefined;
  const outputs = payload.value.outputs;
  if (!carriesTextBytes(outputs) && !Object.values(outputs).some((v) => v.length >= LARGE_OUTPUT_CHARS)) return undefined;
  return encodeResultReply(reply.taskId, payload.value);
}

/**
 * A TaskResponse carrying `result`, encoded as the generated encoder does (same fields, same
 * order), straight into one array of the message's size. The generated encoder grows its buffer
 * to three times a string's length, shifts each enclosing message's bytes once it knows its
 * length, and copies the whole message out at the end: for a 32 MB fs.read, about 100 ms of the
 * worker's time that this spends writing the output's text once.
 *
 * An output carried as bytes (tools/textBytes.ts) with room around it in memory of its own is not
 * copied at all: the message and its gRPC frame are written around it, and grpc-js is given that
 * memory (framedReplies.ts; messageOf() reads the message back). Otherwise its bytes are copied.
 */
export function encodeResultReply(taskId: string, result: TaskResult): ArrayBuffer {
  const outputs = Object.keys(result.outputs).map((key) => message(OUTPUT, [text(KEY, key), outputValue(result.outputs, key)]));
  const scalars = (fields: (w: BinaryWriter) => BinaryWriter) => fields(new BinaryWriter()).finish();
  const body = message(RESULT, [
    scalars((w) => (result.status !== TaskStatus.STATUS_UNSPECIFIED ? w.uint32(8).int32(result.status) : w)),
    ...outputs,
    text(ERROR, result.error),
    scalars((w) => (result.exitCode !== 0 ? w.uint32(32).int32(result.exitCode) : w)),
  ]);
  const top = [text(TASK_ID, taskId), body];
  const size = top.reduce((sum, p) => sum + sizeOf(p), 0);
  const inPlace = framedRepliesApplied() ? placeAround(top, size) : undefined;
  if (inPlace) {
    const { region, start } = inPlace;
    region[start - FRAME_HEADER] = 0; // not compressed
    region.writeUInt32BE(size, start - FRAME_HEADER + 1);
    let at = start;
    for (const piece of top) at = write(region, at, piece);
    return withFrame(region.buffer as ArrayBuffer, region.subarray(start - FRAME_HEADER, start + size));
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const piece of top) at = write(out, at, piece);
  return out.buffer.byteLength === out.byteLength ? out.buffer : Uint8Array.prototype.slice.call(out).buffer;
}

/**
 * Where the message would start in the memory of the one output carried as bytes, so that the
 * bytes stay where they are: when there is one, its memory is its own (an ArrayBuffer Buffer.from
 * wraps whole), and the message's other bytes and its frame fit in the room around it.
 */
function placeAround(top: (Piece | Uint8Array)[], size: number): { region: Buffer; start: number } | undefined {
  const found: { carried: TextBytes; offset: number }[] = [];
  const walk = (pieces: (Piece | Uint8Array)[], at: number) => {
    for (const piece of pieces) {
      if (!(piece instanceof Uint8Array)) {
        const inner = at + 1 + varintSize(piece.bytes);
        if ('carried' in piece) found.push({ carried: piece.carried, offset: inner });
        if ('pieces' in piece) walk(piece.pieces, inner);
      }
      at += sizeOf(piece);
    }
  };
  walk(top, 0);
  const [only, ...others] = found;
  if (!only || others.length > 0) return undefined;
  const { carried, offset } = only;
  const region = carried.region;
  const start = carried.start - offset;
  const whole = region.byteOffset === 0 && region.byteLength === region.buffer.byteLength && region.buffer instanceof ArrayBuffer;
  return whole && start >= FRAME_HEADER && start + size <= region.length ? { region, start } : undefined;
}

/** An output's value: its bytes when it is carried so (not decoding them), else its text. */
function outputValue(outputs: Record<string, string>, key: string): Piece | Uint8Array {
  const carried = textBytesOf(outputs, key);
  if (!carried) return text(VALUE, outputs[key] ?? ''); // '' is how proto3 sends no value
  return carried.length === 0 ? new Uint8Array(0) : { tag: VALUE, carried, bytes: carried.length };
}

/** A string field; nothing when empty (proto3 leaves defaults out). */
function text(tag: number, value: string): Piece | Uint8Array {
  return value === '' ? new Uint8Array(0) : { tag, text: value, bytes: Buffer.byteLength(value, 'utf8') };
}

function message(tag: number, pieces: (Piece | Uint8Array)[]): Piece {
  return { tag, pieces, bytes: pieces.reduce((sum, p) => sum + sizeOf(p), 0) };
}

function sizeOf(piece: Piece | Uint8Array): number {
  return piece instanceof Uint8Array ? piece.byteLength : 1 + varintSize(piece.bytes) + piece.bytes;
}

function write(out: Buffer, at: number, piece: Piece | Uint8Array): number {
  if (piece instanceof Uint8Array) {
    out.set(piece, at);
    return at + piece.byteLength;
  }
  out[at++] = piece.tag;
  at = writeVarint(out, at, piece.bytes);
  if ('pieces' in piece) {
    for (const p of piece.pieces) at = write(out, at, p);
    return at;
  }
  if ('carried' in piece) {
    const { carried } = piece;
    // In place (placeAround) the bytes are there already.
    if (!(out === carried.region && at === carried.start)) out.set(carried.bytes, at);
    return at + carried.length;
  }
  // All ASCII when the UTF-8 length is the length: latin1 then writes the same bytes, faster.
  return at + out.write(piece.text, at, piece.bytes, piece.bytes === piece.text.length ? 'latin1' : 'utf8');
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}
