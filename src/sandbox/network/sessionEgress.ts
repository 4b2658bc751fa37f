// One session's side of the egress gateway: its policy's rules, the addresses its DNS answers
// admitted (and for which names), and what was refused.

import { egressVerdict, nameAllowed, type EgressVerdict } from './egressDecision.js';
import { ipv4Number } from './ipv4.js';
import { parseAllowEntry, type AllowRule, type SessionNetworkPolicy } from './networkPolicy.js';

/** Addresses a session's DNS answers may admit; the oldest go first past it. */
export const MAX_ADMITTED_ADDRESSES = 4096;
/**
 * Names kept for one admitted address; the least recently answered go first past it. Without a
 * bound, a session resolving endless subdomains of an allowed wildcard to one address grew the
 * worker's memory until it died; a name dropped is admitted again by its next answer.
 */
export const MAX_NAMES_PER_ADDRESS = 16;
/** Connections a session may have through the proxy at once (each holds two of the worker's descriptors). */
export const MAX_CONNECTIONS = 256;

export class SessionEgress {
  readonly rules: readonly AllowRule[];
  private readonly admitted = new Map<number, Set<string>>();
  private connections = 0;

  constructor(
    readonly sessionId: string,
    readonly policy: SessionNetworkPolicy,
    private readonly hostAddresses: (address: number) => boolean,
    private readonly onRefused: (kind: 'connect' | 'dns') => void,
    /** Called for each address admitted, before the answer goes back (the installer's firewall set). */
    private readonly onAdmit?: (address: string, name: string) => Promise<void>,
  ) {
    this.rules = policy.allow.map(parseAllowEntry);
  }

  /** A connection through the proxy begins: false (and counted as refused) past MAX_CONNECTIONS. */
  openConnection(): boolean {
    if (this.connections >= MAX_CONNECTIONS) {
      this.onRefused('connect');
      return false;
    }
    this.connections++;
    return true;
  }

  closeConnection(): void {
    this.connections = Math.max(0, this.connections - 1);
  }

  /** Whether the session may ask DNS about `name`; counted when not. */
  mayResolve(name: string): boolean {
    const allowed = nameAllowed({ mode: this.policy.mode, rules: this.rules }, name);
    if (!allowed) this.onRefused('dns');
    return allowed;
  }

  /** Records that a DNS answer for `name` held `address`. */
  async admit(name: string, address: string): Promise<void> {
    const n = ipv4Number(address);
    if (n === undefined) return;
    await this.onAdmit?.(address, name);
    const names = this.admitted.get(n) ?? new Set<string>();
    const lower = name.toLowerCase().replace(/\.$/, '');
    names.delete(lower); // answered again: the most recent
    names.add(lower);
    if (names.size > MAX_NAMES_PER_ADDRESS) names.delete(names.values().next().value!);
    this.admitted.delete(n);
    this.admitted.set(n, names);
    if (this.admitted.size > MAX_ADMITTED_ADDRESSES) this.admitted.delete(this.admitted.keys().next().value!);
  }

  /** Whether the verdict on a connection to `address`:`port` waits for the name it presents. */
  needsName(address: string, port: number): boolean {
    const n = ipv4Number(address);
    if (n === undefined) return false;
    const unnamed = egressVerdict(
      { mode: this.policy.mode, rules: this.rules, hostAddresses: this.hostAddresses },
      { address: n, port, name: undefined, admittedFor: [] },
    );
    return !unnamed.allowed && (this.admitted.get(n)?.size ?? 0) > 0;
  }

  /** The verdict on a connection to `address`:`port` presenting `name`; counted when refused. */
  verdict(address: string, port: number, name: string | undefined): EgressVerdict {
    const n = ipv4Number(address);
    const verdict: EgressVerdict =
      n === undefined
        ? { allowed: false, reason: 'not an IPv4 address' }
        : egressVerdict(
            { mode: this.policy.mode, rules: this.rules, hostAddresses: this.hostAddresses },
            { address: n, port, name, admittedFor: [...(this.admitted.get(n) ?? [])] },
          );
    if (!verdict.allowed) this.onRefused('connect');
    return verdict;
  }
}
