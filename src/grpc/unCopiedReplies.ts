import type { TsProtoServiceDefinition } from 'nice-grpc';

/**
 * A service definition whose replies reach grpc-js without one whole copy. nice-grpc hands grpc-js
 * `Buffer.from(encode(reply).finish())`, and Buffer.from of a Uint8Array copies it: for a 32 MB
 * fs.read, 45 ms of the worker's time. The generated encoder's finish() makes a fresh array of
 * exactly the message, so its ArrayBuffer is passed instead, which Buffer.from wraps without
 * copying (nothing else holds it). `encodeDirectly` may encode a reply itself, into an array of
 * its own (undefined: the generated encoder's). tests/unit/unCopiedMessages.test.ts checks that the
 * bytes grpc-js gets are the encoder's own.
 */
export function unCopiedReplies<T extends TsProtoServiceDefinition>(
  definition: T,
  encodeDirectly: (reply: never) => ArrayBuffer | undefined = () => undefined,
): T {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => {
      const encode = method.responseType.encode.bind(method.responseType);
      const unCopied = (message: never) => {
        const direct = encodeDirectly(message);
        return { finish: () => direct ?? wholeArrayBuffer(encode(message).finish()) };
      };
      return [name, { ...method, responseType: { ...method.responseType, encode: unCopied } }];
    }),
  );
  return { ...definition, methods };
}

/** The ArrayBuffer when `bytes` spans all of it (Buffer.from then shares it), else `bytes` (Buffer.from then copies). */
function wholeArrayBuffer(bytes: Uint8Array): Uint8Array | ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes.buffer : bytes;
}
