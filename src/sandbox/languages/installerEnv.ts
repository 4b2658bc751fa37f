import { SYSTEM_PATH } from './language.js';
import { proxyVariables } from './proxyVariables.js';

/**
 * The whole environment of a package installer's step (pip, npm): a fixed base, the installer's
 * own settings, and the host's proxy settings (how it reaches its registry). Nothing else of the
 * worker's environment or the session's.
 */
export function installerEnv(settings: Record<string, string>): Record<string, string> {
  return { PATH: SYSTEM_PATH, HOME: '/tmp', LANG: 'C.UTF-8', ...settings, ...proxyVariables() };
}
