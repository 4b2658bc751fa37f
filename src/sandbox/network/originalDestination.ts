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
  // A read already under way may have begun before this connection's entry was made: not found
  // there, it is looked for once more in a read begun after.
  const underWay = reading.get(table) !== undefined;
  const found = findOriginalDestination(await readTable(table), peer, localPort);
  return found ?? (underWay ? findOriginalDestination(await readTable(table), peer, localPort) : undefined);
}

/**
 * One read of the table at a time, shared by every lookup waiting for it: the kernel walks its
 * whole hash table for each read, so a session opening connections as fast as it can costs one
 * read at a time, not one per connection.
 */
const reading = new Map<string, Promise<string>>();
function readTable(table: string): Promise<string> {
  let read = reading.get(table);
  if (!read) {
    read = readFile(table, 'latin1').finally(() => reading.delete(table));
    reading.set(table, read);
  }
  return read;
}

export function findOriginalDestination(
  text: string,
  peer: { address: string; port: number },
  localPort: number,
): { address: string; port: number } | undefined {
  const ip = escape(peer.address);
  const entry = new RegExp(` tcp +6 .*?src=${ip} dst=(\\S+) sport=${peer.port} dport=(\\d+) src=\\S+ dst=${ip} sport=${localPort} dport=${peer.port} `);
  const [, address, port] = entry.exec(text) ?? [];
  return address !== undefined && port !== undefined ? { address, port: Number(port) } : undefined;
}
