import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BinaryWriter } from '@bufbuild/protobuf/wire';
import { TaskExecutionDefinition, TaskRequest, TaskResponse } from '../../gen/codegen/v1/task_execution.js';
import { unCopiedRequests } from '../../src/client/unCopiedRequests.js';
import { unCopiedReplies } from '../../src/grpc/unCopiedReplies.js';

// What nice-grpc does with a definition before grpc-js sees it (internal, so untyped).
type Serialize = (value: unknown) => Buffer;
const niceGrpc = (await import('nice-grpc/lib/service-definitions/index.js')) as unknown as {
  normalizeServiceDefinition(definition: unknown): unknown;
  toGrpcJsServiceDefinition(definition: unknown): Record<string, { requestSerialize: Serialize; responseSerialize: Serialize }>;
};

type MessageType = typeof TaskRequest | typeof TaskResponse;

/** ExecuteTask with `type`'s encoder noting the array each finish() made. */
function noting(type: MessageType, side: 'requestType' | 'responseType') {
  const finished: Uint8Array[] = [];
  const encode = (message: never): BinaryWriter => {
    const writer = type.encode(message);
    return Object.assign(Object.create(writer) as BinaryWriter, { finish: () => finished[finished.push(writer.finish()) - 1] });
  };
  const method = { ...TaskExecutionDefinition.methods.executeTask, [side]: { ...type, encode } };
  return { finished, definition: { ...TaskExecutionDefinition, methods: { ...TaskExecutionDefinition.methods, executeTask: method } } };
}

function assertUnCopied(bytes: Buffer, finished: Uint8Array[], type: MessageType, message: unknown): void {
  assert.equal(bytes.buffer, finished.at(-1)?.buffer, 'the encoder’s array itself, not a copy');
  assert.deepEqual(type.decode(bytes), message);
}

const contents = 'x'.repeat(100_000);

test('unCopiedReplies: grpc-js gets the worker’s reply as the generated code encodes it, in the encoder’s own memory', () => {
  const { finished, definition } = noting(TaskResponse, 'responseType');
  const serialize = niceGrpc.toGrpcJsServiceDefinition(niceGrpc.normalizeServiceDefinition(unCopiedReplies(definition))).executeTask!.responseSerialize;
  const reply: TaskResponse = { taskId: 't', payload: { $case: 'result', value: { status: 1, outputs: { contents, path: 'a' }, error: '', exitCode: 0 } } };
  assertUnCopied(serialize(reply), finished, TaskResponse, reply);
});

test('unCopiedRequests: grpc-js gets the client’s request as the generated code encodes it, in the encoder’s own memory', () => {
  const { finished, definition } = noting(TaskRequest, 'requestType');
  const serialize = niceGrpc.toGrpcJsServiceDefinition(niceGrpc.normalizeServiceDefinition(unCopiedRequests(definition))).executeTask!.requestSerialize;
  const request: TaskRequest = { taskId: '', sessionId: 's', toolName: 'fs.write', arguments: { path: 'a', contents }, constraints: undefined };
  assertUnCopied(serialize(request), finished, TaskRequest, request);
});
