import { errors } from '../errors.js';
import { parseCount } from './arguments.js';
import { defineTool } from './tool.js';

/** Default life of a port URL. */
const DEFAULT_EXPIRES_SECONDS = 3600;

/**
 * A signed, expiring URL on the worker's HTTP endpoint that reaches `port` on the session's own
 * loopback, HTTP and WebSocket (http/portRequests.ts); the session needs no network for it.
 */
export const portUrl = defineTool({
  name: 'port.url',
  kind: 'instant',
  arguments: { required: ['port'], optional: ['expires_seconds'] },
  outputs: ['url', 'expires_at_ms'],
  parse({ port, expires_seconds }) {
    const number = parseCount('port.url', 'port', port);
    if (number < 1 || number > 65_535) throw errors.invalidArgument(`port.url port must be from 1 to 65535, got '${port.slice(0, 20)}'`);
    const expires = parseCount('port.url', 'expires_seconds', expires_seconds, DEFAULT_EXPIRES_SECONDS);
    if (expires < 1) throw errors.invalidArgument('port.url expires_seconds must be at least 1');
    return { port: number, expires };
  },
  run: async ({ port, expires }, { session, portLinks }) => {
    if (!portLinks) throw errors.portsUnavailable('this worker hands out no port URLs');
    if (expires > portLinks.maxExpiresSeconds) throw errors.invalidArgument(`port.url expires_seconds must be at most ${portLinks.maxExpiresSeconds}`);
    session.sandbox.canConnectPorts();
    const url = portLinks.url(session.id, port, expires);
    return { ok: true, exitCode: 0, outputs: { url, expires_at_ms: String(Date.now() + expires * 1000) } };
  },
});
