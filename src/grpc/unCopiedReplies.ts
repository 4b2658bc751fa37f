import type { TsProtoServiceDefinition } from 'nice-grpc';

/**
 * A service definition whose replies reach grpc-js without one whole copy. nice-grpc hands grpc-js
 * `Buffer.from(encode(reply).finish())`, and Buffer.from of a Uint8Array copies it: for a 32 MB
 * fs.read, 45 ms of the worker's time. The generated encoder's finish() makes a fresh array of
 * exactly the message, so its ArrayBuffer is passed instead, which Buffer.from wraps without
 * copying (nothing else holds it). `encodeDirectly` may encode a reply itself, into an array of
 * its own (undefined: the generated encoder's), before nice-grpc's fromPartial() copy of it. tests/unit/unCopiedMessages.test.ts checks that the
 * bytes grpc-js gets are the encoder's own.
 */
export function unCopiedReplies<T extends TsProtoServiceDefinition>(
  definition: T,
  encodeDirectly: (reply: never) => ArrayBuffer | undefined = () => undefined,
): T {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => {
      const type = method.responseType;
      const encode = type.encode.bind(type);
      const fromPartial = type.fromPartial?.bind(type) as ((message: never) => unknown) | undefined;
      // nice-grpc encodes fromPartial(reply): a reply encoded directly is encoded before that copy
      // of it (which would read every output, and an output carried as bytes would be decoded).
      const direct = new WeakMap<object, ArrayBuffer>();
      const early = (message: never) => {
        const bytes = encodeDirectly(message);
        if (!bytes) return fromPartial ? fromPartial(message) : message;
        const token = {};
        direct.set(token, bytes);
        return token;
      };
      const unCopied = (message: never) => ({ finish: () => direct.get(message) ?? wholeArrayBuffer(encode(message).finish()) });
      return [name, { ...method, responseType: { ...type, fromPartial: early, encode: unCopied } }];
    }),
  );
  return { ...definition, methods };
}

/** The ArrayBuffer when `bytes` spans all of it (Buffer.from then shares it), else `bytes` (Buffer.from then copies). */
function wholeArrayBuffer(bytes: Uint8Array): Uint8Array | ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes.buffer : bytes;
}
