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
