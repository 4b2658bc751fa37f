import type { TsProtoServiceDefinition } from 'nice-grpc';
import { undecodable } from './checkRequest.js';

/**
 * A service definition whose request decoding never throws: bytes that do not decode (an int64
 * past 2^53, a truncated field) become a stand-in that the adapter refuses with
 * INVALID_ARGUMENT (checkRequest), where grpc-js would answer INTERNAL.
 */
export function tolerantDefinition<T extends TsProtoServiceDefinition>(definition: T): T {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => {
      const decode = method.requestType.decode.bind(method.requestType);
      const tolerant = (input: Uint8Array) => {
        try {
          return decode(input) as unknown;
        } catch (err) {
          return undecodable(err);
        }
      };
      return [name, { ...method, requestType: { ...method.requestType, decode: tolerant } }];
    }),
  );
  return { ...definition, methods };
}
