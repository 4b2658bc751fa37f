// Whether one outbound connection of a session may go: a pure function of its policy, where it
// goes, what name it presents, and what the session's DNS answers admitted.

import { cidrContains, cidrWithin, NEVER_REACHABLE, PRIVATE_RANGES } from './ipv4.js';
import type { AllowRule, NetworkModeName } from './networkPolicy.js';

export interface EgressRequest {
  /** The destination the session's code connected to. */
  address: number;
  port: number;
  /** The name the connection presents: a TLS ClientHello's SNI or an HTTP request's Host; undefined for neither. */
  name: string | undefined;
  /** Names whose DNS answers to this session held `address` (lower case). */
  admittedFor: readonly string[];
}

export interface EgressSubject {
  mode: NetworkModeName;
  rules: readonly AllowRule[];
  /** The host's own addresses and the worker's session subnet: never reachable. */
  hostAddresses: (address: number) => boolean;
}

export type EgressVerdict = { allowed: true } | { allowed: false; reason: string };

function nameMatches(rule: AllowRule, name: string, port: number): boolean {
  if (rule.kind !== 'name' || (rule.port !== undefined && rule.port !== port)) return false;
  return rule.wildcard ? name.endsWith(`.${rule.name}`) : name === rule.name;
}

function cidrRule(rules: readonly AllowRule[], address: number, port: number): (AllowRule & { kind: 'cidr' }) | undefined {
  return rules.find((r): r is AllowRule & { kind: 'cidr' } => r.kind === 'cidr' && cidrContains(r.cidr, address) && (r.port === undefined || r.port === port));
}

/**
 * OPEN: anything public. ALLOW_LIST: a CIDR rule's addresses; or an address a DNS answer for an
 * allowed name admitted, when the connection presents an allowed name (TLS SNI, HTTP Host), or
 * presents none and a rule names one of its names with this very port (a protocol with no name
 * in it: the address is all there is to check). Private ranges only where a rule names them;
 * the host, loopback and link-local never.
 */
export function egressVerdict(subject: EgressSubject, request: EgressRequest): EgressVerdict {
  const { address, port, name } = request;
  const never = NEVER_REACHABLE.find((r) => cidrContains(r.cidr, address));
  if (never) return { allowed: false, reason: never.what };
  if (subject.hostAddresses(address)) return { allowed: false, reason: "the host's own address" };
  if (subject.mode === 'none') return { allowed: false, reason: 'the session has no network' };
  const rules = subject.rules;
  const byCidr = cidrRule(rules, address, port);
  const presented = name?.toLowerCase().replace(/\.$/, '');
  // By name: the address came from a DNS answer for an allowed name, and the connection says
  // which allowed name it wants (or, saying none, a rule allows that name on this very port).
  const byName = (): EgressVerdict => {
    if (!request.admittedFor.some((admitted) => rules.some((r) => nameMatches(r, admitted, port))))
      return { allowed: false, reason: 'an address no allowed name resolved to' };
    if (presented !== undefined)
      return rules.some((r) => nameMatches(r, presented, port)) ? { allowed: true } : { allowed: false, reason: 'a name the policy does not allow' };
    const portRule = request.admittedFor.some((admitted) => rules.some((r) => r.port === port && nameMatches(r, admitted, port)));
    return portRule ? { allowed: true } : { allowed: false, reason: 'no name presented (TLS SNI or HTTP Host) and no rule names this port' };
  };
  const privateRange = PRIVATE_RANGES.find((p) => cidrContains(p, address));
  if (privateRange) {
    if (byCidr && cidrWithin(byCidr.cidr, privateRange)) return { allowed: true };
    const verdict = byName();
    return verdict.allowed ? verdict : { allowed: false, reason: 'a private address the policy does not name' };
  }
  if (subject.mode === 'open' || byCidr) return { allowed: true };
  return byName();
}

/** Whether a DNS question for `name` may be answered for a session under this policy. */
export function nameAllowed(subject: Pick<EgressSubject, 'mode' | 'rules'>, name: string): boolean {
  if (subject.mode === 'open') return true;
  if (subject.mode === 'none') return false;
  const lower = name.toLowerCase().replace(/\.$/, '');
  return subject.rules.some((r) => r.kind === 'name' && (r.wildcard ? lower.endsWith(`.${r.name}`) : lower === r.name));
}
