import assert from 'node:assert/strict';
import { test } from 'node:test';
import { egressVerdict, nameAllowed, type EgressRequest } from '../../src/sandbox/network/egressDecision.js';
import { ipv4Number } from '../../src/sandbox/network/ipv4.js';
import { parseAllowEntry, type NetworkModeName } from '../../src/sandbox/network/networkPolicy.js';
import { MAX_CONNECTIONS, MAX_NAMES_PER_ADDRESS, SessionEgress } from '../../src/sandbox/network/sessionEgress.js';

const host = ipv4Number('192.0.2.10')!;
const subject = (mode: NetworkModeName, allow: string[]) => ({ mode, rules: allow.map(parseAllowEntry), hostAddresses: (a: number) => a === host });
const to = (address: string, port: number, name?: string, admittedFor: string[] = []): EgressRequest => ({
  address: ipv4Number(address)!,
  port,
  name,
  admittedFor,
});
const allowed = (s: ReturnType<typeof subject>, r: EgressRequest) => egressVerdict(s, r).allowed;

test('never: loopback, link-local (metadata), the host, multicast, whatever the policy', () => {
  const wide = subject('open', ['0.0.0.0/0', '169.254.169.254', '127.0.0.1', 'metadata.test']);
  for (const address of ['127.0.0.1', '127.9.9.9', '169.254.169.254', '0.0.0.0', '224.0.0.1', '255.255.255.255', '192.0.2.10'])
    assert.equal(allowed(wide, to(address, 80, 'metadata.test', ['metadata.test'])), false, address);
});

test('none refuses everything; open takes any public address, private ones only where named', () => {
  assert.equal(allowed(subject('none', []), to('203.0.113.5', 443)), false);
  const open = subject('open', []);
  assert.equal(allowed(open, to('203.0.113.5', 443)), true);
  assert.equal(allowed(open, to('203.0.113.5', 22)), true);
  for (const address of ['10.0.0.1', '172.16.5.5', '192.168.1.1', '100.64.0.1'])
    assert.equal(allowed(open, to(address, 80, 'x.test', ['x.test'])), false, address);
  assert.equal(allowed(subject('open', ['10.1.0.0/16']), to('10.1.2.3', 5432)), true, 'a CIDR inside the private range names it');
  assert.equal(allowed(subject('open', ['0.0.0.0/0']), to('10.1.2.3', 5432)), false, 'the whole internet does not name the private ranges');
  assert.equal(
    allowed(subject('open', ['db.internal']), to('10.1.2.3', 80, 'db.internal', ['db.internal'])),
    true,
    'an allowed name resolving to a private address',
  );
  assert.equal(allowed(subject('open', ['db.internal']), to('10.1.2.3', 80, 'db.internal', ['evil.test'])), false, 'a rebinding name is not the allowed one');
});

test('allow list: names by SNI/Host on addresses their answers admitted; a raw IP no; a shared IP under another name no', () => {
  const s = subject('allow_list', ['api.test']);
  assert.equal(allowed(s, to('203.0.113.10', 443, 'api.test', ['api.test'])), true);
  assert.equal(allowed(s, to('203.0.113.10', 80, 'API.test.', ['api.test'])), true);
  assert.equal(allowed(s, to('203.0.113.10', 443, 'other.test', ['api.test', 'other.test'])), false, 'shared IP, other SNI');
  assert.equal(allowed(s, to('203.0.113.10', 443, 'api.test', [])), false, 'raw IP never resolved');
  assert.equal(allowed(s, to('203.0.113.10', 443, undefined, ['api.test'])), false, 'no name and no port rule');
  assert.equal(allowed(s, to('203.0.113.10', 443, 'api.test', ['other.test'])), false, 'an address admitted for another name');
});

test('allow list: wildcards, CIDRs and ports', () => {
  const s = subject('allow_list', ['*.cdn.test', '198.51.100.0/24:8000', 'db.test:5432']);
  assert.equal(allowed(s, to('203.0.113.20', 443, 'a.cdn.test', ['a.cdn.test'])), true);
  assert.equal(allowed(s, to('203.0.113.20', 443, 'x.y.cdn.test', ['x.y.cdn.test'])), true);
  assert.equal(allowed(s, to('203.0.113.20', 443, 'cdn.test', ['cdn.test'])), false, 'a wildcard is its subdomains only');
  assert.equal(allowed(s, to('198.51.100.7', 8000)), true);
  assert.equal(allowed(s, to('198.51.100.7', 8001)), false);
  assert.equal(allowed(s, to('198.51.101.7', 8000)), false);
  assert.equal(allowed(s, to('203.0.113.30', 5432, undefined, ['db.test'])), true, 'a protocol with no name: the port rule');
  assert.equal(allowed(s, to('203.0.113.30', 5433, undefined, ['db.test'])), false);
  assert.equal(allowed(s, to('203.0.113.30', 5432, 'evil.test', ['db.test'])), false, 'a presented name must be allowed');
});

test('DNS questions: open answers any, allow list only allowed names, none nothing', () => {
  const s = subject('allow_list', ['api.test', '*.cdn.test']);
  assert.equal(nameAllowed(s, 'API.test.'), true);
  assert.equal(nameAllowed(s, 'a.cdn.test'), true);
  assert.equal(nameAllowed(s, 'cdn.test'), false);
  assert.equal(nameAllowed(s, 'other.test'), false);
  assert.equal(nameAllowed(subject('open', []), 'anything.example'), true);
  assert.equal(nameAllowed(subject('none', []), 'api.test'), false);
});

test('a session holds at most MAX_CONNECTIONS through the proxy at once; past it each is refused and counted', () => {
  const refused: string[] = [];
  const egress = new SessionEgress(
    's',
    { mode: 'open', allow: [] },
    () => false,
    (kind) => refused.push(kind),
  );
  for (let i = 0; i < MAX_CONNECTIONS; i++) assert.equal(egress.openConnection(), true);
  assert.equal(egress.openConnection(), false);
  assert.deepEqual(refused, ['connect']);
  egress.closeConnection();
  assert.equal(egress.openConnection(), true);
});

test(`an admitted address keeps its ${MAX_NAMES_PER_ADDRESS} most recently answered names: endless subdomains to one address hold no more`, async () => {
  const egress = new SessionEgress(
    's',
    { mode: 'allow_list', allow: ['*.wild.test', 'db.wild.test:5432'] },
    () => false,
    () => undefined,
  );
  const address = '203.0.113.7';
  await egress.admit('db.wild.test', address);
  assert.equal(egress.verdict(address, 5432, undefined).allowed, true, 'a nameless connection on the named port');
  for (let i = 0; i < 50_000; i++) await egress.admit(`n${i}.wild.test`, address);
  assert.equal(egress.verdict(address, 5432, undefined).allowed, false, 'db.wild.test was answered least recently: dropped');
  assert.equal(egress.verdict(address, 443, 'n49999.wild.test').allowed, true);
  await egress.admit('db.wild.test', address);
  assert.equal(egress.verdict(address, 5432, undefined).allowed, true, 'answered again, admitted again');
});
