// Listen and connect addresses as the worker's settings spell them.

/** `host:port` or `[v6]:port` → [host, port]. */
export function splitHostPort(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), Number(address.slice(colon + 1))];
}

/** Whether a listen address only takes connections from this host. */
export function isLoopback(address: string): boolean {
  const [host] = splitHostPort(address);
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
