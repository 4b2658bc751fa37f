import assert from 'node:assert/strict';
import { test } from 'node:test';
import { installerEndpoints, installerSources, PIP_DEFAULT_SOURCES } from '../../src/sandbox/network/installerEndpoints.js';
import { egressRuleset } from '../../src/sandbox/network/egressRules.js';

test("the installer's endpoints: IP literals as they are, names for the DNS gate, each with its port", () => {
  const endpoints = installerEndpoints([
    'http://127.0.0.1:8080/simple/',
    'https://Registry.Example.com/',
    'http://localhost:3000',
    'file:///srv/goproxy',
    'not a url',
    'https://registry.example.com/again',
    'http://[::1]:9000/',
  ]);
  assert.deepEqual(endpoints.addresses, [
    { address: '127.0.0.1', port: 8080 },
    { address: '127.0.0.1', port: 3000 },
  ]);
  assert.deepEqual(endpoints.names, [{ name: 'registry.example.com', port: 443 }]);
});

test("the installer's sources: pip's index (or pip's defaults), npm's registry, each Go proxy, the proxies it was given", () => {
  const sources = installerSources(
    { pipIndexUrl: undefined, npmRegistry: 'https://r.test/', goProxy: 'https://a.test|https://b.test,file:///x' },
    { HTTPS_PROXY: 'http://proxy.test:3128' },
  );
  assert.deepEqual(sources, [...PIP_DEFAULT_SOURCES, 'https://r.test/', 'https://a.test', 'https://b.test', 'file:///x', 'http://proxy.test:3128']);
});

test("the installer's chains: DNS to the gate, its endpoints, and a reset for anything else", () => {
  const rules = egressRuleset('cg2n', { proxy: 1, dns: 2 }, { uid: 200000, addresses: [{ address: '127.0.0.1', port: 8080 }] });
  assert.match(rules, /elements = \{ 127\.0\.0\.1 \. 8080 \}/);
  assert.match(rules, /meta skuid 200000 udp dport 53 redirect to :2/);
  assert.match(
    rules,
    /meta skuid 200000 ip daddr \. tcp dport @installer_endpoints accept\n\s*meta skuid 200000 meta l4proto tcp reject with tcp reset\n\s*meta skuid 200000 reject/,
  );
});
