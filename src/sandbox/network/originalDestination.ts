// Where a connection the egress rules redirected to the proxy was going: the kernel's connection
// tracking table keeps the original tuple (/proc/net/nf_conntrack; getsockopt SO_ORIGINAL_DST
// would say the same, but Node has no getsockopt).

import { readFile } from 'node:fs/promises';

export const CONNTRACK_TABLE = '/proc/net/nf_conntrack';

const escape = (text: string) => text.replace(/[.]/g, '\\.');

/**
 * The original destination of the TCP connection from `peer` that was redirected to our
 * `localPort`; undefined when the table has no such entry.
 */
export async function originalDestination(
  peer: { address: string; port: number },
  localPort: number,
  table = CONNTRACK_TABLE,
): Promise<{ address: string; port: number } | undefined> {
  return findOriginalDestination(await readFile(table, 'latin1'), peer, localPort);
}

export function findOriginalDestination(
  text: string,
  peer: { address: string; port: number },
  localPort: number,
): { address: string; port: number } | undefined {
  const ip = escape(peer.address);
  const entry = new RegExp(` tcp +6 .*?src=${ip} dst=(\\S+) sport=${peer.port} dport=(\\d+) src=\\S+ dst=${ip} sport=${localPort} dport=${peer.port} `);
  const match = entry.exec(text);
  return match ? { address: match[1], port: Number(match[2]) } : undefined;
}
