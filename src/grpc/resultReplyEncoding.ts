import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import type { TaskResponse, TaskResult } from '../../gen/codegen/v1/task_execution.js';

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

/** A length-delimited piece: a string field, or a message of pieces. */
type Piece = { tag: number; text: string; bytes: number } | { tag: number; pieces: (Piece | Uint8Array)[]; bytes: number };

/** A reply carrying a result with a large output (fs.read's contents) encoded by encodeResultReply; undefined for any other. */
export function encodeLargeResultReply(reply: TaskResponse): ArrayBuffer | undefined {
  const payload = reply.payload;
  if (payload?.$case !== 'result' || !Object.values(payload.value.outputs).some((v) => v.length >= LARGE_OUTPUT_CHARS)) return undefined;
  return encodeResultReply(reply.taskId, payload.value);
}

/**
 * A TaskResponse carrying `result`, encoded as the generated encoder does (same fields, same
 * order), straight into one array of the message's size. The generated encoder grows its buffer
 * to three times a string's length, shifts each enclosing message's bytes once it knows its
 * length, and copies the whole message out at the end: for a 32 MB fs.read, about 100 ms of the
 * worker's time that this spends writing the output's text once.
 */
export function encodeResultReply(taskId: string, result: TaskResult): ArrayBuffer {
  const outputs = Object.entries(result.outputs).map(([key, value]) => message(OUTPUT, [text(KEY, key), text(VALUE, value)]));
  const scalars = (fields: (w: BinaryWriter) => BinaryWriter) => fields(new BinaryWriter()).finish();
  const body = message(RESULT, [
    scalars((w) => (result.status !== TaskStatus.STATUS_UNSPECIFIED ? w.uint32(8).int32(result.status) : w)),
    ...outputs,
    text(ERROR, result.error),
    scalars((w) => (result.exitCode !== 0 ? w.uint32(32).int32(result.exitCode) : w)),
  ]);
  const top = [text(TASK_ID, taskId), body];
  const out = Buffer.allocUnsafe(top.reduce((sum, p) => sum + sizeOf(p), 0));
  let at = 0;
  for (const piece of top) at = write(out, at, piece);
  return out.buffer.byteLength === out.byteLength ? out.buffer : Uint8Array.prototype.slice.call(out).buffer;
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
