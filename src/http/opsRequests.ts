import type { Route } from './httpServer.js';
import { reply } from './httpServer.js';

export interface OpsState {
  /** Serving and not draining: what a load balancer should send work to. */
  ready(): boolean;
  /** The Prometheus text exposition. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

/**
 * What an orchestrator asks the HTTP endpoint: GET /healthz (the process answers: alive),
 * GET /readyz (200 while ready, 503 from the first shutdown signal) and GET /metrics.
 */
export function opsRoutes(state: OpsState): Route[] {
  const onlyGet =
    (handle: Route['handle']): Route['handle'] =>
    (req, res, url) =>
      req.method === 'GET' || req.method === 'HEAD' ? handle(req, res, url) : reply(res, 405, 'GET only');
  return [
    { prefix: '/healthz', handle: onlyGet((_req, res) => reply(res, 200, 'alive')) },
    { prefix: '/readyz', handle: onlyGet((_req, res) => (state.ready() ? reply(res, 200, 'ready') : reply(res, 503, 'not ready: starting or draining'))) },
    {
      prefix: '/metrics',
      handle: onlyGet(async (_req, res) => {
        const { contentType, body } = await state.metrics();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      }),
    },
  ];
}
