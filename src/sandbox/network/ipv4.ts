// IPv4 addresses and CIDR blocks as numbers: sessions have IPv4 only (docs/api.md "Network").

import { isIPv4 } from 'node:net';

/** An IPv4 block: its first address and prefix length. */
export interface Cidr {
  base: number;
  prefix: number;
}

/** `a.b.c.d` → a 32-bit unsigned number; undefined when it is not a dotted IPv4 address. */
export function ipv4Number(address: string): number | undefined {
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (!isIPv4(plain)) return undefined;
  return plain.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

export function ipv4Text(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** `a.b.c.d/n` (or a bare address: /32) → the block; undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const [address, prefixText, ...rest] = text.split('/');
  if (address === undefined || rest.length > 0) return undefined;
  const n = ipv4Number(address);
  if (n === undefined || address.startsWith('::ffff:')) return undefined;
  const prefix = prefixText === undefined ? 32 : /^\d{1,2}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= 32)) return undefined;
  return { base: (n & mask(prefix)) >>> 0, prefix };
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return (address & mask(cidr.prefix)) >>> 0 === cidr.base;
}

/** Whether `inner` lies wholly inside `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, inner.base);
}

export function cidrText(cidr: Cidr): string {
  return `${ipv4Text(cidr.base)}/${cidr.prefix}`;
}

const block = (text: string): Cidr => parseCidr(text)!;

/** Never reachable from a session, whatever its policy: the host itself and what only it should reach. */
export const NEVER_REACHABLE: readonly { cidr: Cidr; what: string }[] = [
  { cidr: block('0.0.0.0/8'), what: 'this host (0.0.0.0/8)' },
  { cidr: block('127.0.0.0/8'), what: 'loopback' },
  { cidr: block('169.254.0.0/16'), what: 'link-local (cloud metadata)' },
  { cidr: block('224.0.0.0/4'), what: 'multicast' },
  { cidr: block('240.0.0.0/4'), what: 'reserved' },
];

/** Reachable only where a session's policy names them (a CIDR inside one, or an allowed name). */
export const PRIVATE_RANGES: readonly Cidr[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '198.18.0.0/15'].map(block);
