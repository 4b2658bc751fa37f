import { isAscii } from 'node:buffer';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SLICE_BYTES, STRING_PIECE } from './textBytes.js';

/**
 * Standard padded base64 (A–Z a–z 0–9 + /, `=` only as the last one or two characters) decoded,
 * or undefined for anything else. Contents may be tens of megabytes, so no pass of our own runs
 * over them (a regex took longer than the rest of fs.write): Node's decoder does the work, and is
 * held to strictness around it. It is lenient in known ways: it skips characters outside the
 * alphabet, stops at a `=`, and takes the URL-safe `-` and `_`. So the text must be ASCII (its
 * UTF-8 length is its length; the decoder would truncate wider characters into the alphabet),
 * hold no `-` or `_`, and decode to exactly as many bytes as its length and padding promise:
 * every skipped or stopping character loses at least one. tests/unit/base64.test.ts holds this
 * against a character-by-character check.
 */
export function decodeStrictBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0) return undefined;
  if (Buffer.byteLength(text, 'utf8') !== text.length) return undefined;
  if (text.includes('-') || text.includes('_')) return undefined;
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === (text.length / 4) * 3 - padding ? bytes : undefined;
}

/**
 * decodeStrictBase64 of a request's bytes (grpc/taskRequestDecoding.ts keeps large contents so),
 * a slice of whole 4-character groups at a time with the event loop free between slices, never
 * the whole text as a string (pieces of STRING_PIECE characters). The same answer for the same
 * bytes read as UTF-8: non-ASCII is refused either way. Each piece must decode to exactly its
 * groups' bytes (less the padding, in the last): a character Node's decoder skips or stops at
 * costs its piece at least one.
 */
export async function decodeStrictBase64Bytes(text: Uint8Array, sliceChars = SLICE_BYTES): Promise<Buffer | undefined> {
  const chars = Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  if (chars.length % 4 !== 0 || !isAscii(chars) || chars.includes(0x2d) || chars.includes(0x5f)) return undefined;
  const padding = chars.length > 0 && chars[chars.length - 1] === 0x3d ? (chars[chars.length - 2] === 0x3d ? 2 : 1) : 0;
  const out = Buffer.allocUnsafe((chars.length / 4) * 3 - padding);
  const step = Math.max(4, sliceChars - (sliceChars % 4));
  const piece = Math.min(step, STRING_PIECE);
  let written = 0;
  let sinceTurn = 0;
  for (let from = 0; from < chars.length; from += piece) {
    const slice = chars.subarray(from, Math.min(chars.length, from + piece));
    const last = from + piece >= chars.length;
    const expected = (slice.length / 4) * 3 - (last ? padding : 0);
    // latin1 of ASCII is the characters themselves: one short string per piece.
    if (out.write(slice.toString('latin1'), written, 'base64') !== expected) return undefined;
    written += expected;
    sinceTurn += slice.length;
    if (sinceTurn >= step && !last) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
  return out;
}
