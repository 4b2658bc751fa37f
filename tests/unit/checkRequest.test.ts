import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { checkLength, checkMap, checkRequest, REQUEST_LIMITS, undecodable } from '../../src/grpc/checkRequest.js';
import { tolerantDefinition } from '../../src/grpc/tolerantDefinition.js';
import { ArtifactServiceDefinition, UploadURLRequest } from '../../gen/codegen/v1/artifact_service.js';

const invalid = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(
    fn,
    (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details) && Buffer.byteLength(err.details) <= 1024,
  );

test('string fields past their limit are refused naming the field (in proto spelling) and the limit, quoting the value shortened', () => {
  invalid(
    () => checkRequest({ sessionId: 'x'.repeat(100_000) }, { sessionId: 'id' }),
    /^invalid argument: session_id is 100000 characters long; at most 128 are allowed \("x{40}…"\)$/,
  );
  invalid(
    () => checkRequest({ workspaceId: 'w'.repeat(REQUEST_LIMITS.nameChars + 1) }, { workspaceId: 'name' }),
    /workspace_id is 257 characters long; at most 256/,
  );
  assert.deepEqual(checkRequest({ sessionId: 's'.repeat(128) }, { sessionId: 'id' }), { sessionId: 's'.repeat(128) });
});

test('maps are bounded in entries, key length, value and total bytes', () => {
  const limits = { entries: 2, keyChars: 3, valueBytes: 4, totalBytes: 8 };
  invalid(() => checkMap('metadata', { a: '1', b: '2', c: '3' }, limits), /metadata has 3 entries; at most 2/);
  invalid(() => checkMap('metadata', { long: '1' }, limits), /a key of metadata is 4 characters long; at most 3/);
  invalid(() => checkMap('metadata', { a: 'ééé' }, limits), /metadata\["a"\] is 6 bytes; at most 4/);
  invalid(() => checkMap('metadata', { abc: '1234', b: '12' }, limits), /metadata holds 10 bytes in all; at most 8/);
  checkMap('metadata', { a: '1', b: '2' }, limits);
});

test('a request whose bytes do not decode becomes INVALID_ARGUMENT, not a throw inside grpc-js', () => {
  const tolerant = tolerantDefinition(ArtifactServiceDefinition);
  // size_bytes (field 4, varint) = 2^62: past what a JS number holds exactly.
  const bytes = UploadURLRequest.encode(UploadURLRequest.fromPartial({ sessionId: 's', sizeBytes: 2 ** 62 })).finish();
  assert.throws(() => UploadURLRequest.decode(bytes));
  const decoded = tolerant.methods.getUploadURL.requestType.decode(bytes);
  invalid(() => checkRequest(decoded, { sessionId: 'id' }), /the request does not decode/);
  const fine = tolerant.methods.getUploadURL.requestType.decode(
    UploadURLRequest.encode(UploadURLRequest.fromPartial({ sessionId: 's', sizeBytes: 5 })).finish(),
  );
  assert.equal(checkRequest(fine, { sessionId: 'id' }).sizeBytes, 5);
});

test('camelCase fields are named as the protos spell them; fields that are not strings are left alone', () => {
  invalid(
    () => checkRequest({ toolName: 't'.repeat(65) }, { toolName: 'toolName' }),
    /^invalid argument: tool_name is 65 characters long; at most 64 are allowed/,
  );
  invalid(() => checkRequest({ checkpointId: 'c'.repeat(129) }, { checkpointId: 'id' }), /checkpoint_id is 129 characters long; at most 128/);
  assert.doesNotThrow(() => checkRequest({ sessionId: 5 as unknown as string }, { sessionId: 'id' }));
  // Fields not listed are not checked (payloads are bounded by the message size).
  assert.doesNotThrow(() => checkRequest({ sessionId: 's', code: 'x'.repeat(10_000) }, { sessionId: 'id' }));
});

test('checkLength counts characters and quotes the value cut to 40 characters', () => {
  checkLength('f', 'é'.repeat(10), 10);
  invalid(() => checkLength('f', 'é'.repeat(11), 10), /^invalid argument: f is 11 characters long; at most 10 are allowed \("é{11}"\)$/);
  invalid(() => checkLength('f', 'q'.repeat(41), 40), new RegExp(`\\("${'q'.repeat(40)}…"\\)$`));
});

test('undecodable() marks a stand-in that every checkRequest refuses, quoting why', () => {
  const standIn = undecodable(new Error('int64 too large'));
  invalid(() => checkRequest(standIn, {}), /^invalid argument: the request does not decode \("int64 too large"\)$/);
  invalid(() => checkRequest(undecodable('a string'), {}), /does not decode \("a string"\)/);
});
