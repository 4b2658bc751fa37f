import type { TsProtoServiceDefinition } from 'nice-grpc';

/**
 * A service definition whose requests reach grpc-js without one whole copy: nice-grpc hands it
 * `Buffer.from(encode(request).finish())`, which copies a Uint8Array (45 ms of a 32 MB fs.write)
 * but wraps an ArrayBuffer. The generated encoder's finish() makes a fresh array of exactly the
 * message, so its ArrayBuffer is passed. (The worker does the same for its replies:
 * src/grpc/unCopiedReplies.ts; the client shares no code with the server.)
 */
export function unCopiedRequests<T extends TsProtoServiceDefinition>(definition: T): T {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => {
      const encode = method.requestType.encode.bind(method.requestType);
      const unCopied = (message: unknown) => {
        const bytes = encode(message).finish();
        const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
        return { finish: () => (whole ? bytes.buffer : bytes) };
      };
      return [name, { ...method, requestType: { ...method.requestType, encode: unCopied } }];
    }),
  );
  return { ...definition, methods };
}
