// unit: own process (it patches grpc-js for the whole process: tests/unit-tier.sh)
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import fc from 'fast-check';
import { applyJoinedAsTheyCome, JOIN_AS_THEY_COME_BYTES, patchedDecoder, unpatchedWrite } from '../../src/grpc/joinedAsTheyCome.js';

const require = createRequire(import.meta.url);
type Decoder = { write(data: Buffer): Buffer[] };
const newDecoder = (max: number) => new (patchedDecoder as unknown as new (max: number) => Decoder)(max);

/** Frames (a compression flag, the length, the message) as a client sends them. */
function framed(messages: Buffer[]): Buffer {
  return Buffer.concat(
    messages.map((m, i) => {
      const header = Buffer.alloc(5);
      header[0] = i % 2;
      header.writeUInt32BE(m.length, 1);
      return Buffer.concat([header, m]);
    }),
  );
}

/** What a decoder gives for `stream` cut at `cuts`: each message, and the error if one is thrown. */
function decodeAll(write: (this: Decoder, data: Buffer) => Buffer[], stream: Buffer, cuts: number[], max = -1): { messages: Buffer[]; error?: string } {
  const decoder = newDecoder(max);
  const messages: Buffer[] = [];
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  try {
    for (const to of [...points, stream.length]) {
      if (to > from) messages.push(...write.call(decoder, stream.subarray(from, to)));
      from = Math.max(from, to);
    }
  } catch (err) {
    return { messages, error: (err as Error).message };
  }
  return { messages };
}

test('grpc-js joins the same messages, small and large (empty ones too), however the stream is cut into pieces', () => {
  applyJoinedAsTheyCome();
  const large = JOIN_AS_THEY_COME_BYTES;
  const message = fc
    .oneof(fc.integer({ min: 0, max: 40 }), fc.constantFrom(large - 1, large, large + 7, 2 * large + 3))
    .chain((size) => fc.integer({ min: 0, max: 255 }).map((seed) => Buffer.alloc(size, seed).fill(seed * 7 + 1, 0, Math.min(size, 9))));
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 40 }), fc.boolean(), (messages, cuts, fine) => {
      const stream = framed(messages);
      // Pieces around the bound where the patch makes its array, and past it.
      const at = fine ? cuts.concat(Array.from({ length: 30 }, (_, i) => Math.floor((stream.length * i) / 30))) : cuts;
      const patched = decodeAll(patchedDecoder.prototype.write as never, stream, at);
      assert.equal(patched.error, undefined);
      assert.deepEqual(patched, decodeAll(unpatchedWrite as never, stream, at));
      assert.deepEqual(
        patched.messages.map((m) => m.subarray(5)),
        messages,
      );
    }),
    { numRuns: 60 },
  );
});

test('a message larger than the maximum is refused as grpc-js refuses it, before anything is held', () => {
  applyJoinedAsTheyCome();
  const stream = framed([Buffer.alloc(10), Buffer.alloc(3 * JOIN_AS_THEY_COME_BYTES)]);
  const patched = decodeAll(patchedDecoder.prototype.write as never, stream, [3, 20], 2 * JOIN_AS_THEY_COME_BYTES);
  assert.match(patched.error ?? '', /Received message larger than max/);
  assert.deepEqual(patched, decodeAll(unpatchedWrite as never, stream, [3, 20], 2 * JOIN_AS_THEY_COME_BYTES));
});

test('a large message is joined in its own array as it comes, made once an eighth has come', () => {
  applyJoinedAsTheyCome();
  const size = 8 * JOIN_AS_THEY_COME_BYTES;
  const stream = framed([Buffer.alloc(size, 'q')]);
  const decoder = newDecoder(-1);
  assert.deepEqual(decoder.write(stream.subarray(0, 5 + size / 8 - 1)), []);
  assert.equal((decoder as { joined?: Buffer }).joined, undefined, 'not yet made');
  assert.deepEqual(decoder.write(stream.subarray(5 + size / 8 - 1, 5 + size / 8)), []);
  const joined = (decoder as { joined?: Buffer }).joined;
  assert.ok(joined && joined.length === size + 5, 'made, the whole message and its header');
  const [message] = decoder.write(stream.subarray(5 + size / 8));
  assert.equal(message, joined, 'the same array given on');
  assert.ok(message.equals(stream));
});

test("the patched class is the one grpc-js's server (nice-grpc's grpc-js) decodes requests with", () => {
  const niceGrpc = createRequire(require.resolve('nice-grpc'));
  const grpcJs = niceGrpc.resolve('@grpc/grpc-js');
  const fromServer = createRequire(niceGrpc.resolve('@grpc/grpc-js/build/src/server-interceptors'))('./stream-decoder') as { StreamDecoder: unknown };
  assert.equal(fromServer.StreamDecoder, patchedDecoder);
  assert.equal(require.resolve('@grpc/grpc-js'), grpcJs);
  applyJoinedAsTheyCome();
  assert.notEqual(patchedDecoder.prototype.write, unpatchedWrite);
});
