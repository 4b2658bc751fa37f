import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { TaskExecutionDefinition, TaskRequest } from '../../gen/codegen/v1/task_execution.js';
import { decodeTaskRequest, LARGE_ARGUMENT_BYTES, largeArgumentsAsBytes } from '../../src/grpc/taskRequestDecoding.js';
import { textBytesOf } from '../../src/tools/textBytes.js';
import { checkArguments } from '../../src/tools/arguments.js';

/** What a decoder answers: the request (arguments read, so in their order), or the error's kind and message. */
function outcome(decode: (bytes: Uint8Array) => TaskRequest, bytes: Uint8Array): unknown {
  try {
    const request = decode(bytes);
    return { ...request, arguments: Object.entries(request.arguments) };
  } catch (err) {
    return { threw: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

const generated = (bytes: Uint8Array) => TaskRequest.decode(bytes);

// Keys that collide with what an object has (and repeat, so later entries replace earlier ones).
const key = fc.oneof(fc.constantFrom('path', 'contents', 'code', '__proto__', 'toString', '1', '0', ''), fc.string({ maxLength: 6 }));
// Bytes that are not UTF-8: lone continuations, cut leads, surrogates, overlongs, past U+10FFFF; and a BOM.
const BAD = [[0x80], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80], [0xef, 0xbb, 0xbf]];
const text = fc.array(
  fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => Buffer.from(s)),
    fc.constantFrom(...BAD.map((b) => Buffer.from(b))),
  ),
  {
    maxLength: 6,
  },
);
// Small values, and values past the bound (a filler then the pieces, so the bad bytes land anywhere).
const value = fc.oneof(
  text.map((parts) => Buffer.concat(parts)),
  fc.tuple(fc.integer({ min: LARGE_ARGUMENT_BYTES - 8, max: LARGE_ARGUMENT_BYTES + 8 }), text, fc.boolean()).map(([size, parts, front]) => {
    const filler = Buffer.alloc(size, 'x');
    return Buffer.concat(front ? [...parts, filler] : [filler, ...parts]);
  }),
);

/** A field of the wire, written raw so that any bytes (not only UTF-8) can be a string field's. */
type Field = (w: BinaryWriter) => void;
const stringField =
  (no: number, bytes: Uint8Array): Field =>
  (w) =>
    void w.uint32((no << 3) | 2).bytes(bytes);
const entry = fc.tuple(key, value, fc.boolean()).map(([k, v, swapped]): Field => (w) => {
  const inner = new BinaryWriter();
  const fields = [stringField(1, Buffer.from(k)), stringField(2, v)];
  for (const f of swapped ? fields.reverse() : fields) f(inner);
  w.uint32((4 << 3) | 2).bytes(inner.finish());
});
const field: fc.Arbitrary<Field> = fc.oneof(
  { weight: 4, arbitrary: entry },
  fc.tuple(fc.constantFrom(1, 2, 3), text).map(([no, parts]) => stringField(no, Buffer.concat(parts))),
  fc.tuple(fc.nat(1000), fc.nat(100)).map(
    ([t, m]): Field =>
      (w) =>
        void w.uint32((5 << 3) | 2).bytes(new BinaryWriter().uint32(8).uint32(t).uint32(16).uint32(m).finish()),
  ),
  // Unknown fields of each wire type are skipped.
  fc.constantFrom<Field>(
    (w) => void w.uint32((9 << 3) | 0).uint32(7),
    (w) => void w.uint32((10 << 3) | 2).bytes(Buffer.from('unknown')),
    (w) => void w.uint32((11 << 3) | 5).fixed32(3),
  ),
);
const message = fc.array(field, { maxLength: 8 }).map((fields) => {
  const w = new BinaryWriter();
  for (const f of fields) f(w);
  return w.finish();
});

test('decodeTaskRequest answers as the generated decoder for generated requests: repeated, odd and invalid UTF-8 keys and values, large and small', () => {
  fc.assert(
    fc.property(message, (bytes) => {
      assert.deepStrictEqual(outcome(decodeTaskRequest, bytes), outcome(generated, bytes));
    }),
    { numRuns: 300 },
  );
});

test('decodeTaskRequest answers as the generated decoder for malformed bytes (cut, flipped, zero tags), errors included', () => {
  fc.assert(
    fc.property(message, fc.nat(), fc.nat(255), fc.boolean(), (bytes, at, byte, cut) => {
      const input = Buffer.from(bytes);
      if (input.length === 0) return;
      if (!cut) input[at % input.length] = byte;
      const cutAt = cut ? at % input.length : input.length;
      assert.deepStrictEqual(outcome(decodeTaskRequest, input.subarray(0, cutAt)), outcome(generated, input.subarray(0, cutAt)));
    }),
    { numRuns: 300 },
  );
});

test('a large argument stays the request bytes (no copy); reading it decodes it once, as the generated decoder does', () => {
  const contents = 'é'.repeat(LARGE_ARGUMENT_BYTES);
  const bytes = Buffer.from(
    TaskRequest.encode({ taskId: '', sessionId: 's', toolName: 'fs.write', arguments: { path: 'a', contents }, constraints: undefined }).finish(),
  );
  const request = decodeTaskRequest(bytes);
  const carried = textBytesOf(request.arguments, 'contents');
  assert.ok(carried, 'contents are carried as bytes');
  assert.equal(textBytesOf(request.arguments, 'path'), undefined, 'a small argument is a string');
  assert.equal(carried.bytes.buffer, bytes.buffer, 'the bytes are the request buffer itself');
  assert.ok(carried.bytes.equals(Buffer.from(contents)));
  assert.deepEqual(Object.keys(request.arguments), ['path', 'contents']);
  assert.equal(request.arguments.contents, contents);
  assert.equal(request.arguments.contents, request.arguments.contents, 'decoded once, then the same string');
  assert.deepEqual({ ...request.arguments }, { path: 'a', contents }, 'a copy holds the text');
  assert.deepEqual(checkArguments('fs.write', request.arguments, ['path', 'contents']), request.arguments);
});

test('large invalid UTF-8 is carried as it came, and reads as the generated decoder reads it (U+FFFD for each bad sequence, a BOM kept)', () => {
  const raw = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.alloc(LARGE_ARGUMENT_BYTES, 'y'), Buffer.from([0xc3, 0x28, 0xed, 0xa0, 0x80, 0xff])]);
  const w = new BinaryWriter();
  stringField(2, Buffer.from('s'))(w);
  const inner = new BinaryWriter();
  stringField(1, Buffer.from('contents'))(inner);
  stringField(2, raw)(inner);
  w.uint32((4 << 3) | 2).bytes(inner.finish());
  const bytes = w.finish();
  const request = decodeTaskRequest(bytes);
  assert.ok(textBytesOf(request.arguments, 'contents')!.bytes.equals(raw), 'the bytes as sent');
  assert.equal(request.arguments.contents, generated(bytes).arguments.contents);
  assert.ok(request.arguments.contents!.startsWith('\ufeffyyy') && request.arguments.contents!.endsWith('y\ufffd(\ufffd\ufffd\ufffd\ufffd'));
});

test('ExecuteTask alone decodes its requests so; the other methods keep the generated decoders', () => {
  const definition = largeArgumentsAsBytes(TaskExecutionDefinition);
  assert.equal(definition.methods.executeTask.requestType.decode, decodeTaskRequest);
  assert.equal(definition.methods.executeTask.requestType.encode, TaskExecutionDefinition.methods.executeTask.requestType.encode);
  assert.equal(definition.methods.cancelTask, TaskExecutionDefinition.methods.cancelTask);
  assert.equal(definition.methods.getTaskStatus, TaskExecutionDefinition.methods.getTaskStatus);
});
