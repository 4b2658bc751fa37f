import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BinaryWriter } from '@bufbuild/protobuf/wire';
import { TaskResponse, TaskExecutionDefinition } from '../../gen/codegen/v1/task_execution.js';
import { unCopiedReplies } from '../../src/grpc/unCopiedReplies.js';

// What nice-grpc's server does with a definition before grpc-js sees it (internal, so untyped).
const niceGrpc = (await import('nice-grpc/lib/service-definitions/index.js')) as unknown as {
  normalizeServiceDefinition(definition: unknown): unknown;
  toGrpcJsServiceDefinition(definition: unknown): Record<string, { responseSerialize(value: unknown): Buffer }>;
};

test('unCopiedReplies: grpc-js gets the reply as the generated code encodes it, in the encoder’s own memory (no copy)', () => {
  let finished: Uint8Array | undefined;
  const method = TaskExecutionDefinition.methods.executeTask;
  // The generated encoder, noting the array its finish() made.
  const encode = (message: TaskResponse): BinaryWriter => {
    const writer = TaskResponse.encode(message);
    return Object.assign(Object.create(writer) as BinaryWriter, { finish: () => (finished = writer.finish()) });
  };
  const definition = {
    ...TaskExecutionDefinition,
    methods: { ...TaskExecutionDefinition.methods, executeTask: { ...method, responseType: { ...TaskResponse, encode } } },
  };
  const serialize = niceGrpc.toGrpcJsServiceDefinition(niceGrpc.normalizeServiceDefinition(unCopiedReplies(definition))).executeTask.responseSerialize;
  const reply: TaskResponse = {
    taskId: 'task-1',
    payload: { $case: 'result', value: { status: 1, outputs: { contents: 'x'.repeat(100_000), path: 'a' }, error: '', exitCode: 0 } },
  };
  const bytes = serialize(reply);
  assert.deepEqual(bytes, Buffer.from(TaskResponse.encode(reply).finish()));
  assert.equal(bytes.buffer, finished?.buffer, 'the encoder’s array itself, not a copy');
  assert.deepEqual(TaskResponse.decode(bytes), reply);
});
