import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import descriptor from 'google-protobuf/google/protobuf/descriptor_pb.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Server reflection (v1 and v1alpha), as grpcurl uses it, from a client that has no protos: the
// requests and answers are encoded here by hand; only FileDescriptorProto is decoded with a
// library (google-protobuf's own descriptor).

let worker: RunningWorker;
let client: Client;

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
  client = new Client(worker.address, credentials.createInsecure());
});

after(async () => {
  client?.close();
  await worker?.stop();
});

/** A length-delimited field. */
const field = (number: number, bytes: Buffer) => Buffer.concat([Buffer.from([(number << 3) | 2]), varint(bytes.length), bytes]);
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** The length-delimited fields of a message, by number (repeated ones in order). */
function fields(message: Buffer): Map<number, Buffer[]> {
  const found = new Map<number, Buffer[]>();
  let at = 0;
  const readVarint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = message.readUInt8(at++); // past the end: a RangeError, not a loop for ever
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (at < message.length) {
    const key = readVarint();
    const wire = key & 7;
    if (wire === 0) readVarint();
    else if (wire === 2) {
      const length = readVarint();
      found.set(key >>> 3, [...(found.get(key >>> 3) ?? []), message.subarray(at, at + length)]);
      at += length;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return found;
}

function ask(version: 'v1' | 'v1alpha', request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = client.makeBidiStreamRequest(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      new Metadata(),
      { deadline: new Date(Date.now() + 10_000) },
    );
    stream.once('data', (response: Buffer) => {
      resolve(response);
      stream.end();
    });
    stream.on('error', (err: ServiceError) => reject(err));
    stream.write(request);
  });
}

for (const version of ['v1', 'v1alpha'] as const) {
  test(`reflection ${version} lists the three services and describes TaskRequest`, async () => {
    // ServerReflectionRequest{list_services = "*"} (field 7); the answer's list_services_response is field 6.
    const listed = fields(await ask(version, field(7, Buffer.from('*'))));
    const services = (fields(listed.get(6)![0]!).get(1) ?? []).map((service) => fields(service).get(1)![0]!.toString());
    for (const name of ['codegen.v1.SessionManagement', 'codegen.v1.TaskExecution', 'codegen.v1.ArtifactService'])
      assert.ok(services.includes(name), `${name} in ${services.join(', ')}`);

    // file_containing_symbol (field 4); the answer's file_descriptor_response (field 4) holds FileDescriptorProtos (field 1).
    const files = fields(fields(await ask(version, field(4, Buffer.from('codegen.v1.TaskRequest')))).get(4)![0]!).get(1)!;
    const messages = files.flatMap((bytes) => descriptor.FileDescriptorProto.deserializeBinary(bytes).getMessageTypeList());
    const taskRequest = messages.find((m) => m.getName() === 'TaskRequest');
    assert.ok(taskRequest, 'TaskRequest is described');
    assert.deepEqual(
      taskRequest
        .getFieldList()
        .map((f) => f.getName())
        .slice(0, 5),
      ['task_id', 'session_id', 'tool_name', 'arguments', 'constraints'],
    );
  });
}
