import { asCallError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * The one place domain errors become call statuses: a WorkerError keeps its code and message;
 * anything unexpected is logged and answered INTERNAL, so the worker never crashes on a call.
 */
export function toServerError(err: unknown, method: string, logger: Logger): unknown {
  return asCallError(err, (ref, error) => logger.error('unexpected error in call', { method, ref, error }));
}

type Methods = Record<string, (...args: never[]) => unknown>;

/**
 * Wraps every unary method of a service implementation so its errors go through toServerError.
 * Streaming methods are passed through: a wrapper (or a middleware) would add a generator layer
 * to every streamed message, so they map their own errors.
 */
export function withMappedErrors<T extends object>(
  definition: { name: string; methods: Record<string, { responseStream: boolean }> },
  implementation: T,
  logger: Logger,
): T {
  const wrapped: Methods = {};
  for (const [name, method] of Object.entries(implementation as Methods)) {
    const path = `${definition.name}/${name}`;
    const isStreaming = definition.methods[name]?.responseStream === true;
    wrapped[name] = isStreaming
      ? method
      : async (...args: never[]) => {
          try {
            return await (method as (...a: never[]) => Promise<unknown>).apply(implementation, args);
          } catch (err) {
            throw toServerError(err, path, logger);
          }
        };
  }
  return wrapped as T;
}
