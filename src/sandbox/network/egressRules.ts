// The worker's nftables table: what reaches the host from the sessions' namespaces. Every TCP
// connection is redirected to the egress proxy and every DNS question to the DNS gate; nothing
// else from a session's interface is delivered to the host or forwarded anywhere.

export interface EgressPorts {
  proxy: number;
  dns: number;
}

/** pkg.install's fetching uid: its DNS questions go to the gate, its connections only to these endpoints. */
export interface InstallerRules {
  uid: number;
  addresses: readonly { address: string; port: number }[];
}

/** The set the DNS gate adds the installer's resolved endpoints to (nft add element, with a timeout). */
export const INSTALLER_SET = 'installer_endpoints';

/**
 * Connections (TCP, and UDP flows: a DNS question from a new port or to a new address is one)
 * one session may have tracked by the kernel at once. The table is the host's, and the proxy
 * reads all of it to learn where a connection was going: one session filled 64,000 entries with
 * DNS questions to random addresses and made every session's connections 50-300x slower.
 */
export const MAX_TRACKED_FLOWS = 2048;

/**
 * DNS questions per second one session may send (a burst of twice that first). Each costs the
 * gate's event loop, and each one the gate forwards is asked from a fresh port (spoofed answers
 * must guess it): a flow the worker's host tracks for 30 s, so this also bounds those.
 */
export const MAX_DNS_PER_SECOND = 500;

/** The table's name for the worker whose session interfaces are `${prefix}*`. */
export function egressTableName(prefix: string): string {
  return `codegen_${prefix}`;
}

/** An nft script that replaces the worker's table atomically (nft -f applies it as one transaction). */
export function egressRuleset(prefix: string, ports: EgressPorts, installer?: InstallerRules): string {
  const table = egressTableName(prefix);
  const sessions = `iifname "${prefix}*"`;
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    // Per session (its address): flows it holds, and DNS questions a second.
    '  set session_flows {',
    '    type ipv4_addr; size 65535; flags dynamic;',
    '  }',
    '  set session_dns {',
    '    type ipv4_addr; size 65535; flags dynamic,timeout; timeout 10s;',
    '  }',
    '  chain limits {',
    '    type filter hook prerouting priority -150; policy accept;',
    `    ${sessions} ct state new add @session_flows { ip saddr ct count over ${MAX_TRACKED_FLOWS} } drop`,
    `    ${sessions} meta l4proto { tcp, udp } th dport 53 update @session_dns { ip saddr limit rate over ${MAX_DNS_PER_SECOND}/second burst ${2 * MAX_DNS_PER_SECOND} packets } drop`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    ${sessions} udp dport 53 redirect to :${ports.dns}`,
    `    ${sessions} tcp dport 53 redirect to :${ports.dns}`,
    `    ${sessions} meta l4proto tcp redirect to :${ports.proxy}`,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    ${sessions} tcp dport { ${ports.proxy}, ${ports.dns} } accept`,
    `    ${sessions} udp dport ${ports.dns} accept`,
    `    ${sessions} meta l4proto tcp reject with tcp reset`,
    `    ${sessions} drop`,
    // The proxy and the gate listen on every address: they serve sessions and (the gate) the
    // installer's redirected questions, which arrive on loopback; nobody else.
    `    iifname != "lo" tcp dport { ${ports.proxy}, ${ports.dns} } drop`,
    `    iifname != "lo" udp dport ${ports.dns} drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    ${sessions} drop`,
    `    oifname "${prefix}*" drop`,
    '  }',
    ...(installer ? installerChains(installer, ports) : []),
    '}',
    '',
  ].join('\n');
}

function installerChains(installer: InstallerRules, ports: EgressPorts): string[] {
  const uid = `meta skuid ${installer.uid}`;
  const elements = installer.addresses.map((e) => `${e.address} . ${e.port}`);
  return [
    `  set ${INSTALLER_SET} {`,
    '    type ipv4_addr . inet_service; flags timeout;',
    ...(elements.length > 0 ? [`    elements = { ${elements.join(', ')} }`] : []),
    '  }',
    '  chain installer_dns {',
    '    type nat hook output priority -100; policy accept;',
    `    ${uid} udp dport 53 redirect to :${ports.dns}`,
    `    ${uid} tcp dport 53 redirect to :${ports.dns}`,
    '  }',
    '  chain installer_out {',
    '    type filter hook output priority filter; policy accept;',
    `    ${uid} ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport ${ports.dns} accept`,
    `    ${uid} ip daddr . tcp dport @${INSTALLER_SET} accept`,
    `    ${uid} meta l4proto tcp reject with tcp reset`,
    `    ${uid} reject`,
    '  }',
  ];
}
