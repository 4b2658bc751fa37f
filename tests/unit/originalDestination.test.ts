import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findOriginalDestination } from '../../src/sandbox/network/originalDestination.js';
import { egressRuleset } from '../../src/sandbox/network/egressRules.js';

const TABLE = [
  'ipv4     2 udp      17 28 src=10.102.0.2 dst=10.102.0.1 sport=40001 dport=53 src=10.102.0.1 dst=10.102.0.2 sport=41000 dport=40001 mark=0 zone=0 use=2',
  'ipv4     2 tcp      6 431999 ESTABLISHED src=10.102.0.2 dst=203.0.113.5 sport=41736 dport=443 src=10.102.0.1 dst=10.102.0.2 sport=15001 dport=41736 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 tcp      6 431999 ESTABLISHED src=10.102.0.22 dst=198.51.100.1 sport=41736 dport=80 src=10.102.0.1 dst=10.102.0.22 sport=15001 dport=41736 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 tcp      6 117 SYN_SENT src=10.102.0.3 dst=203.0.113.9 sport=5000 dport=22 [UNREPLIED] src=203.0.113.9 dst=10.102.0.3 sport=22 dport=5000 mark=0 zone=0 use=2',
  '',
].join('\n');

test('the original destination of a redirected connection, by its source and our port', () => {
  assert.deepEqual(findOriginalDestination(TABLE, { address: '10.102.0.2', port: 41736 }, 15001), { address: '203.0.113.5', port: 443 });
  assert.deepEqual(findOriginalDestination(TABLE, { address: '10.102.0.22', port: 41736 }, 15001), { address: '198.51.100.1', port: 80 });
  assert.equal(findOriginalDestination(TABLE, { address: '10.102.0.2', port: 41736 }, 15002), undefined, 'redirected to another port');
  assert.equal(findOriginalDestination(TABLE, { address: '10.102.0.3', port: 5000 }, 15001), undefined, 'not redirected to us');
  assert.equal(findOriginalDestination(TABLE, { address: '10.102.0.2', port: 4173 }, 15001), undefined);
});

test("the worker's table: sessions' TCP to the proxy, DNS to the gate, nothing else delivered or forwarded", () => {
  const rules = egressRuleset('cg2n', { proxy: 15001, dns: 15002 });
  assert.match(rules, /^table inet codegen_cg2n\ndelete table inet codegen_cg2n\n/, 'replaced whole, in one transaction');
  assert.match(rules, /iifname "cg2n\*" meta l4proto tcp redirect to :15001/);
  assert.match(rules, /iifname "cg2n\*" udp dport 53 redirect to :15002/);
  assert.match(rules, /chain input \{[\s\S]*?iifname "cg2n\*" drop\n/);
  assert.match(rules, /iifname != "lo" tcp dport \{ 15001, 15002 \} drop\n\s*iifname != "lo" udp dport 15002 drop/, 'the proxy and the gate serve nobody else');
  assert.match(rules, /chain forward \{[^}]*iifname "cg2n\*" drop\n\s*oifname "cg2n\*" drop/);
  assert.match(rules, /chain limits \{\n\s*type filter hook prerouting priority -150;/, 'limits apply before the redirects (dstnat, -100)');
  assert.match(rules, /iifname "cg2n\*" ct state new add @session_flows \{ ip saddr ct count over 2048 \} drop/);
  assert.match(
    rules,
    /iifname "cg2n\*" meta l4proto \{ tcp, udp \} th dport 53 update @session_dns \{ ip saddr limit rate over 500\/second burst 1000 packets \} drop/,
  );
});
