import { createRequire } from 'node:module';

/**
 * A patch of grpc-js (1.14), in this one file, like serverStreamBackpressure.ts. grpc-js frames
 * each reply by copying it whole behind its 5-byte header (serializeMessage): for a 32 MB fs.read,
 * a fresh 32 MB array (16–20 ms of page faults on a small VM) and a copy, on the event loop, while
 * every other session's calls wait. A reply encoded in place (resultReplyEncoding.ts writes the
 * message around fs.read's bytes, header included) is registered here by its ArrayBuffer, and
 * grpc-js sends that memory as it is. Any other reply is framed as grpc-js frames it.
 * tests/unit/framedReplies.test.ts checks that the patched class is the one grpc-js uses.
 */

interface Handler {
  serialize(value: unknown): Buffer;
}

const require = createRequire(import.meta.url);
const interceptors = require('@grpc/grpc-js/build/src/server-interceptors') as {
  BaseServerInterceptingCall: { prototype: { serializeMessage(this: { handler: Handler }, value: unknown): Buffer } };
};

/** Replies encoded with their frame: the ArrayBuffer the encoder returned, and the frame in it. */
const frames = new WeakMap<ArrayBufferLike, Buffer>();

let applied = false;

/** Makes grpc-js send replies registered by withFrame() without copying them. */
export function applyFramedReplies(): void {
  if (applied) return;
  applied = true;
  interceptors.BaseServerInterceptingCall.prototype.serializeMessage = function (value: unknown): Buffer {
    const message = this.handler.serialize(value);
    const frame = frames.get(message.buffer);
    if (frame && message.byteOffset === 0 && message.byteLength === message.buffer.byteLength) {
      frames.delete(message.buffer);
      return frame;
    }
    const output = Buffer.allocUnsafe(message.byteLength + 5);
    output.writeUInt8(0, 0); // not compressed
    output.writeUInt32BE(message.byteLength, 1);
    message.copy(output, 5);
    return output;
  };
}

/** Whether replies may be given with their frame (the patch is applied). */
export function framedRepliesApplied(): boolean {
  return applied;
}

/**
 * Registers `frame` (a 5-byte gRPC message header, then the message, inside `buffer`) as what
 * grpc-js sends when the reply's encoder returns `buffer`. Returns `buffer`.
 */
export function withFrame(buffer: ArrayBuffer, frame: Buffer): ArrayBuffer {
  frames.set(buffer, frame);
  return buffer;
}

/** The message bytes an encoder's ArrayBuffer stands for: its registered frame's message, or all of it. */
export function messageOf(buffer: ArrayBuffer): Buffer {
  return frames.get(buffer)?.subarray(5) ?? Buffer.from(buffer);
}

/** The class patched (for its test). */
export const patchedCall = interceptors.BaseServerInterceptingCall;
