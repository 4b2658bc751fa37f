// A session's network policy: its mode and what its allow list names, checked and bounded.

import { NetworkMode, type NetworkPolicy } from '../../../gen/codegen/v1/common.js';
import { errors, quoted } from '../../errors.js';
import { cidrText, parseCidr, type Cidr } from './ipv4.js';

/** Modes from narrowest to widest: a ceiling admits itself and everything before it. */
export const NETWORK_MODES = ['none', 'allow_list', 'open'] as const;
export type NetworkModeName = (typeof NETWORK_MODES)[number];

/** What a session's record keeps: the mode resolved and the allow list as given (normalised). */
export interface SessionNetworkPolicy {
  mode: NetworkModeName;
  allow: string[];
}

export type AllowRule = { kind: 'name'; name: string; wildcard: boolean; port: number | undefined } | { kind: 'cidr'; cidr: Cidr; port: number | undefined };

export const ALLOW_LIMITS = { entries: 256, entryChars: 260 } as const;

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** One allow entry → its rule; INVALID_ARGUMENT says what is wrong with it. */
export function parseAllowEntry(entry: string): AllowRule {
  const bad = (why: string) => errors.invalidArgument(`config.network.allow entry ${quoted(entry)} ${why}`);
  if (entry.length === 0 || entry.length > ALLOW_LIMITS.entryChars) throw bad(`must be 1 to ${ALLOW_LIMITS.entryChars} characters`);
  if (entry.startsWith('[') || (entry.match(/:/g) ?? []).length > 1) throw bad('is IPv6: sessions have IPv4 only');
  const colon = entry.lastIndexOf(':');
  let port: number | undefined;
  let host = entry;
  if (colon !== -1) {
    const text = entry.slice(colon + 1);
    port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
    if (!(port >= 1 && port <= 65535)) throw bad('has a port that is not 1 to 65535');
    host = entry.slice(0, colon);
  }
  if (/^[\d./]+$/.test(host)) {
    const cidr = parseCidr(host);
    if (!cidr) throw bad('is not an IPv4 address or CIDR block (a.b.c.d/n)');
    return { kind: 'cidr', cidr, port };
  }
  const lower = host.toLowerCase().replace(/\.$/, '');
  const wildcard = lower.startsWith('*.');
  const name = wildcard ? lower.slice(2) : lower;
  if (name.length > 253 || !name.split('.').every((label) => LABEL.test(label)))
    throw bad('is not a host name (labels of letters, digits, "-" and "_"), a "*." wildcard of one, or a CIDR block');
  return { kind: 'name', name, wildcard, port };
}

/** The entry as the session's record and status show it. */
export function allowEntryText(rule: AllowRule): string {
  const host = rule.kind === 'cidr' ? cidrText(rule.cidr) : `${rule.wildcard ? '*.' : ''}${rule.name}`;
  return rule.port === undefined ? host : `${host}:${rule.port}`;
}

/** NETWORK_MODE_ALLOW_LIST → 'allow_list'; UNSPECIFIED or a number the enum lacks → undefined. */
export function modeName(mode: NetworkMode): NetworkModeName | undefined {
  const name = (NetworkMode[mode] as string | undefined)?.replace(/^NETWORK_MODE_/, '').toLowerCase();
  return NETWORK_MODES.find((m) => m === name);
}

export function modeOfName(name: NetworkModeName): NetworkMode {
  return NetworkMode[`NETWORK_MODE_${name.toUpperCase()}` as keyof typeof NetworkMode];
}

/** The worker's settings: the mode a session gets unasked, and the widest one it may ask for. */
export interface NetworkSettings {
  defaultMode: NetworkModeName;
  maxMode: NetworkModeName;
}

/**
 * A requested policy (CreateSession's, or a stored one) checked against the worker's settings:
 * the mode resolved (unset: the default), the allow list parsed and normalised. Asking past the
 * ceiling is PERMISSION_DENIED naming it; a malformed entry is INVALID_ARGUMENT.
 */
export function effectiveNetworkPolicy(
  requested: { mode: NetworkModeName | undefined; allow: readonly string[] },
  settings: NetworkSettings,
): SessionNetworkPolicy {
  const mode = requested.mode ?? settings.defaultMode;
  if (NETWORK_MODES.indexOf(mode) > NETWORK_MODES.indexOf(settings.maxMode)) {
    throw errors.networkPastCeiling(mode, settings.maxMode);
  }
  if (requested.allow.length > ALLOW_LIMITS.entries)
    throw errors.invalidArgument(`config.network.allow has ${requested.allow.length} entries; at most ${ALLOW_LIMITS.entries} are allowed`);
  if (requested.allow.length > 0 && mode === 'none')
    throw errors.invalidArgument('config.network.allow needs mode NETWORK_MODE_ALLOW_LIST or NETWORK_MODE_OPEN (the session would have no network)');
  const allow = [...new Set(requested.allow.map((entry) => allowEntryText(parseAllowEntry(entry))))];
  return { mode, allow };
}

/** CreateSession's policy field → the request effectiveNetworkPolicy checks. */
export function requestedNetworkPolicy(policy: NetworkPolicy | undefined): { mode: NetworkModeName | undefined; allow: readonly string[] } {
  if (policy && policy.mode !== NetworkMode.NETWORK_MODE_UNSPECIFIED && modeName(policy.mode) === undefined)
    throw errors.invalidArgument(`config.network.mode ${policy.mode} is not a NetworkMode (NONE, ALLOW_LIST, OPEN)`);
  return { mode: policy ? modeName(policy.mode) : undefined, allow: policy?.allow ?? [] };
}
