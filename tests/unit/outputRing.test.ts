import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { OutputRing } from '../../src/sandbox/process/outputRing.js';

// What a background process printed, kept in a bounded ring and read from byte offsets: generated
// writes (sizes, streams, a ring smaller and larger than them) are compared with what reads give back.

const writes = fc.array(fc.record({ source: fc.constantFrom('stdout' as const, 'stderr' as const), bytes: fc.uint8Array({ minLength: 0, maxLength: 300 }) }), {
  maxLength: 40,
});

test('a read from any offset gives exactly the bytes printed from there, as far back as the ring keeps, each piece with its stream', () => {
  fc.assert(
    fc.property(writes, fc.integer({ min: 1, max: 2000 }), fc.nat(), (printed, maxBytes, at) => {
      const ring = new OutputRing(maxBytes);
      const all: { source: string; byte: number }[] = [];
      for (const { source, bytes } of printed) {
        ring.append(source, Buffer.from(bytes));
        for (const byte of bytes) all.push({ source, byte });
      }
      assert.equal(ring.next, all.length);
      assert.equal(ring.oldest, Math.max(0, all.length - maxBytes));
      const since = all.length === 0 ? 0 : at % (all.length + 1);
      const from = Math.max(since, ring.oldest);
      const pieces = ring.read(since);
      const got = pieces.flatMap((p) => [...p.bytes].map((byte) => ({ source: p.source, byte })));
      assert.deepEqual(got, all.slice(from));
      // Offsets run on without gaps from where the read starts.
      let offset = from;
      for (const p of pieces) {
        assert.equal(p.offset, offset);
        offset += p.bytes.length;
      }
    }),
    { numRuns: 300 },
  );
});

test('a reader waiting past the end wakes for new output and for the end, and a closed ring takes no more', async () => {
  const ring = new OutputRing(16);
  const never = new AbortController().signal;
  const waiting = ring.waitPast(0, never);
  ring.append('stdout', Buffer.from('a'));
  await waiting;
  const ended = ring.waitPast(1, never);
  ring.close();
  await ended;
  ring.append('stdout', Buffer.from('b'));
  assert.equal(ring.next, 1);
});

test('a process writing a byte at a time costs the ring few pieces, not one per byte', () => {
  const ring = new OutputRing(64 * 1024);
  for (let i = 0; i < 100_000; i++) ring.append('stdout', Buffer.from('x'));
  const pieces = ring.read(0);
  assert.ok(pieces.length <= 20, `${pieces.length} pieces hold the last 64 KiB`);
  assert.equal(Buffer.concat(pieces.map((p) => p.bytes)).length, 64 * 1024);
});
