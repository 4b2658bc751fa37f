// unit: own process (it patches grpc-js for the whole process: tests/unit-tier.sh)
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { TaskExecutionDefinition, TaskResponse, type TaskResult } from '../../gen/codegen/v1/task_execution.js';
import { applyFramedReplies, framedRepliesApplied, messageOf, patchedCall } from '../../src/grpc/framedReplies.js';
import { unCopiedReplies } from '../../src/grpc/unCopiedReplies.js';
import { encodeLargeResultReply, encodeResultReply } from '../../src/grpc/resultReplyEncoding.js';
import {
  carriesTextBytes,
  isUtf8InSlices,
  setTextBytes,
  SLICE_BYTES,
  STRING_PIECE,
  TextBytes,
  textBytesOf,
  writeBase64InSlices,
} from '../../src/tools/textBytes.js';

const require = createRequire(import.meta.url);
let seed = 11;
const random = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * n);
const pick = <T>(items: readonly T[]): T => items[random(items.length)]!;
// Characters of every UTF-8 length, and bytes that are not UTF-8 (a lone continuation, a cut lead, a surrogate, an overlong, past U+10FFFF).
const PIECES = ['a', 'é', '€', '\u{1F600}'].map((c) => Buffer.from(c));
const BAD = [[0x80], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80]].map((b) => Buffer.from(b));

function randomBytes(bad: boolean): Buffer {
  const parts = Array.from({ length: 1 + random(40) }, () => pick(PIECES));
  if (bad) parts.splice(random(parts.length + 1), 0, pick(BAD));
  return Buffer.concat(parts);
}

test('isUtf8InSlices agrees with isUtf8 whole, wherever the slices cut characters', async () => {
  for (let i = 0; i < 400; i++) {
    const bytes = randomBytes(i % 2 === 1);
    const slice = 4 + random(12);
    assert.equal(await isUtf8InSlices(bytes, slice), isUtf8(bytes), `${bytes.toString('hex')} in slices of ${slice}`);
  }
  assert.equal(await isUtf8InSlices(Buffer.from([0x61, 0x80, 0x80, 0x80, 0x80, 0x61]), 4), false, 'four continuation bytes');
  assert.equal(await isUtf8InSlices(Buffer.alloc(0)), true);
});

test('writeBase64InSlices writes what toString(base64) gives, for every length and slice', async () => {
  for (let length = 0; length < 40; length++) {
    const bytes = Buffer.from(Array.from({ length }, () => random(256)));
    for (const slice of [1, 3, 4, 7, 1024]) {
      const out = Buffer.alloc(2 + Math.ceil(length / 3) * 4);
      const written = await writeBase64InSlices(bytes, out, 2, slice);
      assert.equal(out.subarray(2, 2 + written).toString('latin1'), bytes.toString('base64'), `${length} bytes in slices of ${slice}`);
    }
  }
});

test('writeBase64InSlices of more than a string piece writes it whole, each length around the pieces', async () => {
  // Lengths a byte either side of whole pieces (STRING_PIECE characters are 48 KiB of bytes), in one slice and across slices.
  const piece = (STRING_PIECE / 4) * 3;
  for (const length of [piece - 1, piece, piece + 1, 5 * piece + 2])
    for (const slice of [SLICE_BYTES, 2 * piece, piece + 3]) {
      const bytes = Buffer.from(Array.from({ length }, () => random(256)));
      const out = Buffer.alloc(Math.ceil(length / 3) * 4);
      const written = await writeBase64InSlices(bytes, out, 0, slice);
      assert.ok(out.subarray(0, written).equals(Buffer.from(bytes.toString('base64'))), `${length} bytes in slices of ${slice}`);
    }
});

test('an output carried as bytes reads as its text, keeps its place, and gives its bytes to those who ask', () => {
  const outputs: Record<string, string> = { path: 'a.txt' };
  const region = Buffer.from('..héllo..');
  setTextBytes(outputs, 'contents', new TextBytes(region, 2, 6));
  outputs.size = '6';
  assert.deepEqual(Object.keys(outputs), ['path', 'contents', 'size']);
  assert.equal(outputs.contents, 'héllo');
  assert.deepEqual({ ...outputs }, { path: 'a.txt', contents: 'héllo', size: '6' });
  assert.equal(textBytesOf(outputs, 'contents')?.bytes.toString(), 'héllo');
  assert.equal(textBytesOf(outputs, 'path'), undefined);
  assert.equal(carriesTextBytes(outputs), true);
  assert.equal(carriesTextBytes({ a: 'b' }), false);
});

/** A result whose `contents` is carried as bytes in memory with `before` and `after` bytes of room, and the same with its text. */
function carried(text: string, before: number, after: number, taskId: string): { value: TaskResult; plain: TaskResponse } {
  const bytes = Buffer.from(text);
  const region = Buffer.alloc(before + bytes.length + after, 0xaa);
  bytes.copy(region, before);
  const outputs: Record<string, string> = { path: 'dir/ä.txt' };
  setTextBytes(outputs, 'contents', new TextBytes(region, before, bytes.length));
  Object.assign(outputs, { size: String(bytes.length), encoding: 'utf-8' });
  const result = (o: Record<string, string>): TaskResult => ({ status: 1, outputs: o, error: '', exitCode: 0 });
  return {
    value: result(outputs),
    plain: { taskId, payload: { $case: 'result', value: result({ path: 'dir/ä.txt', contents: text, size: String(bytes.length), encoding: 'utf-8' }) } },
  };
}

test('a result carrying bytes encodes as the generated encoder encodes its text, copied or in place', () => {
  const texts = ['', 'x', 'é'.repeat(70_000), 'y'.repeat(200_000)];
  const rooms: [number, number][] = [
    [0, 0],
    [5, 0],
    [8192, 256],
    [3, 1000],
  ];
  const check = () => {
    for (const text of texts)
      for (const [before, after] of rooms) {
        const taskId = `task-${random(1000)}`;
        const { value, plain } = carried(text, before, after, taskId);
        const expected = Buffer.from(TaskResponse.encode(plain).finish());
        assert.deepEqual(
          messageOf(encodeResultReply(taskId, value)),
          expected,
          `${text.length} chars, room ${before}/${after}, framed ${framedRepliesApplied()}`,
        );
        assert.ok(encodeLargeResultReply({ taskId, payload: { $case: 'result', value } }), 'a result carrying bytes is always encoded directly');
      }
  };
  check();
  applyFramedReplies();
  check();
});

test('framed in place: the bytes are not copied, and the frame is the gRPC header and the message', () => {
  applyFramedReplies();
  const { value, plain } = carried('z'.repeat(100_000), 8192, 256, 't');
  const region = textBytesOf(value.outputs, 'contents')!.region;
  const buffer = encodeResultReply('t', value);
  assert.equal(buffer, region.buffer, 'the reply is the memory the bytes were read into');
  const message = messageOf(buffer);
  const frame = Buffer.from(buffer, message.byteOffset - 5, message.length + 5);
  assert.equal(frame[0], 0);
  assert.equal(frame.readUInt32BE(1), message.length);
  assert.deepEqual(TaskResponse.decode(message), plain);
});

test('grpc-js sends a registered frame as it is, and frames any other reply as it would', () => {
  applyFramedReplies();
  const serializeMessage = patchedCall.prototype.serializeMessage;
  const message = Buffer.from('message');
  const plain = serializeMessage.call({ handler: { serialize: () => message } }, {});
  assert.deepEqual(plain, Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]));
  const { value } = carried('w'.repeat(70_000), 8192, 256, 't');
  const buffer = encodeResultReply('t', value);
  const expected = messageOf(buffer);
  const sent = serializeMessage.call({ handler: { serialize: () => Buffer.from(buffer) } }, {});
  assert.equal(sent.buffer, buffer, 'the memory itself');
  assert.deepEqual(sent.subarray(5), expected);
});

test('a reply carrying bytes reaches grpc-js without its bytes being decoded (nice-grpc’s fromPartial copy is skipped)', () => {
  applyFramedReplies();
  const niceGrpc = require('nice-grpc/lib/service-definitions/index.js') as {
    normalizeServiceDefinition(definition: unknown): unknown;
    toGrpcJsServiceDefinition(definition: unknown): Record<string, { responseSerialize: (value: unknown) => Buffer }>;
  };
  const definition = unCopiedReplies(TaskExecutionDefinition, encodeLargeResultReply);
  const serialize = niceGrpc.toGrpcJsServiceDefinition(niceGrpc.normalizeServiceDefinition(definition)).executeTask!.responseSerialize;
  const { value, plain } = carried('v'.repeat(70_000), 8192, 256, 't');
  let decoded = 0;
  const carriedBytes = textBytesOf(value.outputs, 'contents')!;
  setTextBytes(value.outputs, 'contents', carriedBytes);
  const getter = Object.getOwnPropertyDescriptor(value.outputs, 'contents')!.get!;
  Object.defineProperty(value.outputs, 'contents', { enumerable: true, configurable: true, get: (): unknown => (decoded++, getter()) });
  const bytes = serialize({ taskId: 't', payload: { $case: 'result', value } });
  assert.equal(decoded, 0, 'the contents were never made a string');
  assert.deepEqual(messageOf(bytes.buffer as ArrayBuffer), Buffer.from(TaskResponse.encode(plain).finish()));
  assert.equal(carriedBytes.region.buffer, bytes.buffer, 'nice-grpc wrapped the memory the bytes were read into');
});
