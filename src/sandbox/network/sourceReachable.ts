import { lookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { errors } from '../../errors.js';

/** How long a package source may take to accept a connection before it counts as unreachable. */
const CONNECT_MS = 2000;

/**
 * Refuses at once (UNAVAILABLE, naming the URL and the setting) an install whose package source
 * cannot be reached: its name does not resolve, nothing accepts a connection at its address, or
 * (file:) its path is not there. The installers retry such failures for seconds and then blame
 * the packages. Through a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) the source is the proxy's
 * to reach, and nothing is probed.
 */
export async function requireReachable(sourceUrl: string, setting: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const why = await unreachable(sourceUrl, env);
  if (why) throw errors.sourceUnreachable(sourceUrl, why, setting);
}

/** Why `sourceUrl` cannot be reached, or undefined when it can (or cannot be told). */
export async function unreachable(sourceUrl: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(sourceUrl);
  } catch {
    return undefined;
  }
  if (url.protocol === 'file:') return existsSync(fileURLToPath(url)) ? undefined : 'no such path';
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy'].some((name) => env[name])) return undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  let addresses: string[];
  try {
    // Bounded as the connection is: a resolver that does not answer is not waited on longer.
    addresses = (await withTimeout(lookup(host, { all: true }), CONNECT_MS, 'no answer from the resolver')).map((a) => a.address);
  } catch (err) {
    return `its name does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  // Reached if any of its addresses takes a connection, as the installers try each in turn.
  const whys = await Promise.all(addresses.map((address) => connectsTo(address, port)));
  return whys.every((why) => why !== undefined) ? whys.join('; ') : undefined;
}

/** Why nothing took a connection at address:port within CONNECT_MS, or undefined when it did. */
function connectsTo(address: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port, timeout: CONNECT_MS });
    const done = (why: string | undefined) => {
      socket.destroy();
      resolve(why);
    };
    socket.once('connect', () => done(undefined));
    socket.once('timeout', () => done(`nothing answered at ${address}:${port} within ${CONNECT_MS / 1000} s`));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? `connection refused at ${address}:${port}` : `${err.code ?? err.message} at ${address}:${port}`),
    );
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
