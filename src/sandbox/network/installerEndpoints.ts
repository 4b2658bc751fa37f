// Where pkg.install's fetching step (the installer uid, on the host's network) may connect: the
// configured index, registry and module proxies (or an HTTP(S) proxy the worker was given), and
// nothing else: not the worker's ports, not the host's other services, not the cloud metadata.

import { isIPv4 } from 'node:net';

/** Where pip fetches from when no WORKER_PIP_INDEX_URL is set: its index and its file host. */
export const PIP_DEFAULT_SOURCES = ['https://pypi.org/simple/', 'https://files.pythonhosted.org/'];

export interface InstallerEndpoints {
  /** IPv4 literals with their ports: allowed as they are. */
  addresses: { address: string; port: number }[];
  /** Host names with their ports: allowed at whatever the DNS gate answers for them. */
  names: { name: string; port: number }[];
}

/** The endpoints of these URLs (file: URLs and unparsable ones reach nothing). */
export function installerEndpoints(urls: readonly string[]): InstallerEndpoints {
  const endpoints: InstallerEndpoints = { addresses: [], names: [] };
  const seen = new Set<string>();
  for (const text of urls) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') continue;
    const host = url.hostname.replace(/\.$/, '').toLowerCase();
    const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    const key = `${host}:${port}`;
    if (seen.has(key) || host.startsWith('[')) continue;
    seen.add(key);
    if (isIPv4(host)) endpoints.addresses.push({ address: host, port });
    else endpoints.names.push({ name: host === 'localhost' ? 'localhost' : host, port });
  }
  // "localhost" resolves from /etc/hosts, never asking DNS: its address is allowed as it is.
  for (const local of endpoints.names.filter((n) => n.name === 'localhost')) endpoints.addresses.push({ address: '127.0.0.1', port: local.port });
  endpoints.names = endpoints.names.filter((n) => n.name !== 'localhost');
  return endpoints;
}

/** The URLs the installer fetches from, as the worker's settings and environment give them. */
export function installerSources(settings: { pipIndexUrl: string | undefined; npmRegistry: string; goProxy: string }, env: NodeJS.ProcessEnv): string[] {
  const proxies = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].map((name) => env[name]).filter((v): v is string => Boolean(v));
  return [...(settings.pipIndexUrl ? [settings.pipIndexUrl] : PIP_DEFAULT_SOURCES), settings.npmRegistry, ...settings.goProxy.split(/[,|]/), ...proxies];
}
