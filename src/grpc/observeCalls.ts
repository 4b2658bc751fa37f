import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type ServerMiddleware } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import type { Logger } from '../logger.js';
import { metrics } from '../telemetry/metrics.js';
import { endSpan, startChildSpan, startRpcSpan } from '../telemetry/tracing.js';
import type { TokenCheck } from './authenticate.js';

/**
 * What every RPC leaves behind: a count by method and status code (Prometheus), an access-log
 * line (info when it ended other than OK, debug when OK) with method, code, duration and peer,
 * and, when tracing is on, a server span (with a task span under ExecuteTask). `check` (the
 * token's: authenticate.ts) runs first, in the same middleware: a layer of async generators
 * fewer for every message of every call, and a refused call is counted and logged as such.
 */
export function observeCalls(logger: Logger, check?: TokenCheck): ServerMiddleware {
  return async function* observe(call, context) {
    const started = performance.now();
    const method = call.method.path.slice(call.method.path.indexOf('/', 1) + 1);
    const traced = startRpcSpan(call.method.path, context.metadata);
    let code = Status.OK;
    let details = '';
    try {
      check?.(context);
      if (!traced || !call.responseStream) return yield* call.next(call.request, context);
      // Traced ExecuteTask: a task span, finished with the task's final status.
      const request = call.request as { toolName?: string; sessionId?: string };
      const task = startChildSpan(`task ${request.toolName ?? ''}`, traced.context, {
        'codegen.tool': String(request.toolName),
        'codegen.session_id': String(request.sessionId),
      });
      let status = '';
      try {
        for await (const response of call.next(call.request, context)) {
          const payload = (response as { payload?: { $case: string; value: { status?: TaskStatus } } }).payload;
          if (payload?.$case === 'result') status = TaskStatus[payload.value.status ?? 0] ?? '';
          yield response;
        }
      } finally {
        task?.setAttribute('codegen.task_status', status || 'none');
        endSpan(task, status === 'STATUS_SUCCESS' || status === '' ? undefined : status);
      }
      return;
    } catch (err) {
      code = err instanceof ServerError ? err.code : isAbortError(err) ? Status.CANCELLED : Status.UNKNOWN;
      details = err instanceof ServerError ? err.details : '';
      throw err;
    } finally {
      metrics.grpcCalls.inc({ method, code: Status[code] });
      const level = code === Status.OK ? 'debug' : 'info';
      if (logger.isLevelEnabled(level))
        logger.log(level, 'rpc', {
          method,
          code: Status[code],
          duration_ms: Math.round((performance.now() - started) * 10) / 10,
          peer: context.peer,
          ...(details ? { details } : {}),
        });
      if (traced) {
        traced.span.setAttribute('rpc.grpc.status_code', code);
        endSpan(traced.span, code === Status.OK ? undefined : Status[code]);
      }
    }
  };
}
