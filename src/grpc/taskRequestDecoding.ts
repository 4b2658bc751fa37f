import { BinaryReader, getTextEncoding } from '@bufbuild/protobuf/wire';
import type { TsProtoServiceDefinition } from 'nice-grpc';
import { TaskConstraints, type TaskRequest } from '../../gen/codegen/v1/task_execution.js';
import { setTextBytes, TextBytes } from '../tools/textBytes.js';

/** Argument values from this many bytes on are kept as their bytes. */
export const LARGE_ARGUMENT_BYTES = 64 * 1024;

// Tags (field number << 3 | wire type) of proto/codegen/v1/task_execution.proto's TaskRequest
// and its arguments' map entries; tests/unit/taskRequestDecoding.test.ts holds the decoded
// requests to the generated decoder's.
const TASK_ID = (1 << 3) | 2;
const SESSION_ID = (2 << 3) | 2;
const TOOL_NAME = (3 << 3) | 2;
const ARGUMENT = (4 << 3) | 2;
const CONSTRAINTS = (5 << 3) | 2;
const KEY = (1 << 3) | 2;
const VALUE = (2 << 3) | 2;

/** How the generated decoder turns a string field's bytes into text (invalid UTF-8 becomes U+FFFD, a BOM stays). */
const decodeUtf8 = (bytes: Uint8Array) => getTextEncoding().decodeUtf8(bytes);

/**
 * A TaskRequest decoded as the generated decoder decodes it (same fields, same answer for every
 * input, invalid UTF-8 and malformed bytes included), except that an argument value of
 * LARGE_ARGUMENT_BYTES or more is not decoded: it stays the request's bytes (tools/textBytes.ts,
 * no copy), and reading `arguments[key]` decodes it then, once, as the generated decoder would
 * have. fs.write takes such `contents` as they are (textBytesOf), so a 32 MB write is never a JS
 * string in the worker: the generated decoder's UTF-8 decoding of it, the tool's encoding back,
 * and collecting both, held the event loop for tens of milliseconds a request. The bytes are not
 * checked here (they may not be UTF-8): whoever takes them does, as fs.write does, in slices.
 */
export function decodeTaskRequest(input: Uint8Array): TaskRequest {
  const region = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const reader = new BinaryReader(region);
  const message: TaskRequest = { taskId: '', sessionId: '', toolName: '', arguments: {}, constraints: undefined };
  // Last value wins; a key keeps the place of its first entry, as in the generated decoder's object.
  const entries = new Map<string, string | TextBytes>();
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    switch (tag) {
      case TASK_ID:
        message.taskId = reader.string();
        continue;
      case SESSION_ID:
        message.sessionId = reader.string();
        continue;
      case TOOL_NAME:
        message.toolName = reader.string();
        continue;
      case ARGUMENT: {
        const { key, value } = decodeEntry(reader, region, reader.uint32());
        entries.set(key, value);
        continue;
      }
      case CONSTRAINTS:
        message.constraints = TaskConstraints.decode(reader, reader.uint32());
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  for (const [key, value] of entries) {
    // `arguments.__proto__ = text` sets nothing (a prototype must be an object), so the generated
    // decoder has no such key: nor has this.
    if (typeof value === 'string') message.arguments[key] = value;
    else if (key !== '__proto__') setTextBytes(message.arguments, key, value, decodeUtf8);
  }
  return message;
}

/** One entry of the arguments' map, read as TaskRequest_ArgumentsEntry.decode reads it. */
function decodeEntry(reader: BinaryReader, region: Buffer, length: number): { key: string; value: string | TextBytes } {
  const end = reader.pos + length;
  let key = '';
  let value: string | TextBytes = '';
  while (reader.pos < end) {
    const tag = reader.uint32();
    switch (tag) {
      case KEY:
        key = reader.string();
        continue;
      case VALUE: {
        const at = reader.pos;
        const size = reader.uint32();
        reader.pos = at;
        if (size < LARGE_ARGUMENT_BYTES) {
          value = reader.string();
        } else {
          const bytes = reader.bytes();
          value = new TextBytes(region, bytes.byteOffset - region.byteOffset, bytes.byteLength);
        }
        continue;
      }
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return { key, value };
}

/** `definition` (TaskExecution's) with ExecuteTask's requests decoded by decodeTaskRequest. */
export function largeArgumentsAsBytes<T extends TsProtoServiceDefinition>(definition: T): T {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) =>
      name === 'executeTask' ? [name, { ...method, requestType: { ...method.requestType, decode: decodeTaskRequest } }] : [name, method],
    ),
  );
  return { ...definition, methods };
}
