// Listen and connect addresses as the worker's settings spell them.

import { isIPv4 } from 'node:net';

/** `host:port` or `[v6]:port` → [host, port]. */
export function splitHostPort(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), Number(address.slice(colon + 1))];
}

/** Whether a listen address only takes connections from this host. */
export function isLoopback(address: string): boolean {
  const [host] = splitHostPort(address);
  // 127.0.0.0/8 as an IPv4 address only: a DNS name may start with "127." too (127.attacker.example).
  return host === 'localhost' || host === '::1' || (isIPv4(host) && host.startsWith('127.'));
}
