import { SYSTEM_PATH } from './language.js';

/**
 * The whole environment of a package installer's step (pip, npm): a fixed base, the installer's
 * own settings, and the host's proxy settings (how it reaches its registry). Nothing else of the
 * worker's environment or the session's.
 */
export function installerEnv(settings: Record<string, string>): Record<string, string> {
  const proxies = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'].filter((n) => process.env[n] !== undefined);
  return { PATH: SYSTEM_PATH, HOME: '/tmp', LANG: 'C.UTF-8', ...settings, ...Object.fromEntries(proxies.map((n) => [n, process.env[n]!])) };
}
