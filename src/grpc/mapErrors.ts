import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type CallContext, type ServerMiddlewareCall } from 'nice-grpc';
import { WorkerError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * The one place domain errors become call statuses: a WorkerError keeps its code and message;
 * anything unexpected is logged and answered INTERNAL, so the worker never crashes on a call.
 */
export function mapErrorsMiddleware(logger: Logger) {
  return async function* mapErrors<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      if (err instanceof ServerError || isAbortError(err)) throw err;
      if (err instanceof WorkerError) throw new ServerError(err.code, err.message);
      logger.error('unexpected error in call', { method: call.method.path, error: (err as Error).stack ?? String(err) });
      throw new ServerError(Status.INTERNAL, `internal error: ${(err as Error).message ?? String(err)}`);
    }
  };
}
