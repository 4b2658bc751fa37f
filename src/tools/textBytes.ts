import { isUtf8 } from 'node:buffer';
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * An output's text carried as its UTF-8 bytes (fs.read's contents), so that a 32 MB file is never
 * a JS string in the worker: decoding it (TextDecoder: ~40 ms), writing it back into a reply and
 * collecting it held the event loop for tens of milliseconds at a time, and every other session's
 * calls waited behind it. The bytes sit in `region` between room left before and after them, so
 * the reply's encoder (grpc/resultReplyEncoding.ts) can write the message's other fields around
 * them and hand grpc-js the region itself: no copy of the contents on the event loop at all.
 */
export class TextBytes {
  constructor(
    /** Memory holding the bytes at [start, start + length), with room around them. */
    readonly region: Buffer,
    readonly start: number,
    readonly length: number,
  ) {}

  get bytes(): Buffer {
    return this.region.subarray(this.start, this.start + this.length);
  }
}

const CARRIED = Symbol('outputs carried as bytes');
type Carrying = Record<string, string> & { [CARRIED]?: Map<string, TextBytes> };

/**
 * Sets `outputs[key]` to `value`'s text, carried as bytes: any code reading the output gets the
 * string (decoded by `decode` then, once), while textBytesOf() gives the bytes to code that can
 * use them. The key keeps its place in the outputs' order. (Also a request's arguments:
 * grpc/taskRequestDecoding.ts.)
 */
export function setTextBytes(
  outputs: Record<string, string>,
  key: string,
  value: TextBytes,
  decode: (bytes: Buffer) => string = (bytes) => bytes.toString('utf8'),
): void {
  let text: string | undefined;
  Object.defineProperty(outputs, key, { enumerable: true, configurable: true, get: () => (text ??= decode(value.bytes)) });
  const carrying = outputs as Carrying;
  // Not enumerable: a copy of the outputs ({ ...outputs }) copies their text, not this.
  if (!carrying[CARRIED]) Object.defineProperty(carrying, CARRIED, { value: new Map(), enumerable: false });
  carrying[CARRIED]!.set(key, value);
}

/** The bytes `outputs[key]` is carried as, if it is. */
export function textBytesOf(outputs: Record<string, string>, key: string): TextBytes | undefined {
  return (outputs as Carrying)[CARRIED]?.get(key);
}

/** Whether any output is carried as bytes. */
export function carriesTextBytes(outputs: Record<string, string>): boolean {
  return ((outputs as Carrying)[CARRIED]?.size ?? 0) > 0;
}

/** Bytes checked or converted per turn of the event loop: ~1 ms of work, so other calls interleave. */
export const SLICE_BYTES = 1024 * 1024;

/**
 * Whether `bytes` is valid UTF-8, checked a slice at a time with the event loop free between
 * slices. Slices end before a byte that starts a character (at most 3 continuation bytes back),
 * so no character is split; a run of 4 continuation bytes is invalid wherever it is cut.
 */
export async function isUtf8InSlices(bytes: Uint8Array, sliceBytes = SLICE_BYTES): Promise<boolean> {
  const slice = Math.max(4, sliceBytes);
  for (let at = 0; at < bytes.length;) {
    let end = Math.min(bytes.length, at + slice);
    for (let back = 0; back < 3 && end < bytes.length && (bytes[end]! & 0xc0) === 0x80; back++) end--;
    if (!isUtf8(bytes.subarray(at, end))) return false;
    at = end;
    if (at < bytes.length) await nextTurn();
  }
  return true;
}

/**
 * Characters of the strings a conversion makes at a time, at most: below V8's large-object size
 * (128 KiB), a string is allocated young and freed by the next scavenge. One of a megabyte is an
 * old-generation object: fs.write and fs.read of 1 MB each made such strings, and a mark-compact
 * of the worker's whole heap followed every few calls.
 */
export const STRING_PIECE = 64 * 1024;

/**
 * `bytes` in standard padded base64, written as ASCII into `out` at `at`, a slice at a time with
 * the event loop free between slices (slices are whole 3-byte groups, so they join exactly).
 * Returns the characters written.
 */
export async function writeBase64InSlices(bytes: Uint8Array, out: Buffer, at: number, sliceBytes = SLICE_BYTES): Promise<number> {
  const step = Math.max(3, sliceBytes - (sliceBytes % 3));
  const piece = Math.min(step, (STRING_PIECE / 4) * 3);
  let written = 0;
  let sinceTurn = 0;
  for (let from = 0; from < bytes.length; from += piece) {
    const chunk = Buffer.from(bytes.buffer, bytes.byteOffset + from, Math.min(piece, bytes.length - from));
    written += out.write(chunk.toString('base64'), at + written, 'latin1');
    sinceTurn += chunk.length;
    if (sinceTurn >= step && from + piece < bytes.length) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
  return written;
}
