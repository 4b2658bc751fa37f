import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { decodeStrictBase64, decodeStrictBase64Bytes } from '../../src/tools/base64.js';
import { SLICE_BYTES, STRING_PIECE } from '../../src/tools/textBytes.js';

/** The definition, one character at a time: what decodeStrictBase64 must agree with. */
function isStrictBase64(text: string): boolean {
  if (text.length % 4 !== 0) return false;
  const body = text.endsWith('==') ? text.slice(0, -2) : text.endsWith('=') ? text.slice(0, -1) : text;
  return /^[A-Za-z0-9+/]*$/.test(body);
}

// Characters Node's lenient decoder treats each its own way: the alphabet, padding, URL-safe
// letters, skipped ASCII, and wide characters whose low byte is in the alphabet (Ł is U+0141).
const ALPHABET = ['A', 'Q', 'w', '+', '/', '=', '-', '_', ' ', '\n', '\0', '.', 'é', 'Ł', '\u{1F600}'];

function* allStrings(length: number): Generator<string> {
  if (length === 0) {
    yield '';
    return;
  }
  for (const head of allStrings(length - 1)) for (const c of ALPHABET) yield head + c;
}

test('decodeStrictBase64 accepts exactly standard padded base64, every string of four characters from a tricky alphabet', () => {
  for (const length of [0, 1, 2, 3, 4]) {
    for (const text of allStrings(length)) {
      const decoded = decodeStrictBase64(text);
      assert.equal(decoded !== undefined, isStrictBase64(text), JSON.stringify(text));
      if (decoded) assert.deepEqual(decoded, Buffer.from(text, 'base64'), JSON.stringify(text));
    }
  }
});

test('decodeStrictBase64 on longer strings: one odd character anywhere is refused, real data round-trips', () => {
  let seed = 1;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 3000; i++) {
    const bytes = Buffer.from(Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256)));
    const good = bytes.toString('base64');
    assert.deepEqual(decodeStrictBase64(good), bytes);
    if (good.length === 0) continue;
    const at = Math.floor(random() * good.length);
    const bad = good.slice(0, at) + ALPHABET[Math.floor(random() * ALPHABET.length)] + good.slice(at + 1);
    assert.equal(decodeStrictBase64(bad) !== undefined, isStrictBase64(bad), JSON.stringify(bad));
  }
});

test('decodeStrictBase64Bytes gives what decodeStrictBase64 gives for the same bytes read as UTF-8, in slices of any size', async () => {
  const char = fc.constantFrom(...ALPHABET, 'B', 'z', '9', '==');
  const good = fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString('base64'));
  // Valid base64 with one character replaced, spliced or dropped; or anything from the tricky alphabet.
  const text = fc.oneof(
    good,
    fc.tuple(good, fc.nat(), char).map(([g, at, c]) => g.slice(0, at % (g.length + 1)) + c + g.slice((at % (g.length + 1)) + 1)),
    fc.tuple(good, fc.nat(), char).map(([g, at, c]) => g.slice(0, at % (g.length + 1)) + c + g.slice(at % (g.length + 1))),
    fc.array(char, { maxLength: 24 }).map((cs) => cs.join('')),
  );
  await fc.assert(
    fc.asyncProperty(text, fc.integer({ min: 1, max: 40 }), async (t, slice) => {
      const bytes = Buffer.from(t, 'utf8');
      assert.deepEqual(await decodeStrictBase64Bytes(bytes, slice), decodeStrictBase64(bytes.toString('utf8')), `${JSON.stringify(t)} in slices of ${slice}`);
    }),
    { numRuns: 3000 },
  );
  const invalidUtf8 = Buffer.from([0x41, 0x41, 0xc3, 0x41]);
  assert.equal(await decodeStrictBase64Bytes(invalidUtf8), undefined);
});

test('decodeStrictBase64Bytes of text longer than a string piece: whole when valid, refused for a bad character in any piece', async () => {
  const bytes = randomBytes(3 * STRING_PIECE);
  const text = Buffer.from(bytes.toString('base64'));
  for (const slice of [SLICE_BYTES, STRING_PIECE + 4, 3 * STRING_PIECE]) {
    assert.ok((await decodeStrictBase64Bytes(text, slice))?.equals(bytes), `slices of ${slice}`);
    for (const at of [0, STRING_PIECE - 1, STRING_PIECE, 3 * STRING_PIECE + 7, text.length - 1])
      for (const bad of at === text.length - 1 ? ['-', ' '] : ['=', '-', ' ']) {
        const spoiled = Buffer.from(text);
        spoiled[at] = bad.charCodeAt(0);
        assert.equal(await decodeStrictBase64Bytes(spoiled, slice), undefined, `${JSON.stringify(bad)} at ${at} in slices of ${slice}`);
      }
  }
  const padded = Buffer.from(randomBytes(2 * STRING_PIECE + 1).toString('base64'));
  assert.equal((await decodeStrictBase64Bytes(padded))?.length, 2 * STRING_PIECE + 1, 'its padding in the last piece');
});
