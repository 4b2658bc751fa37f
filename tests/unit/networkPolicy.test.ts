import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import fc from 'fast-check';
import { allowEntryText, effectiveNetworkPolicy, parseAllowEntry, requestedNetworkPolicy } from '../../src/sandbox/network/networkPolicy.js';
import { effectiveSessionConfig, storedSessionConfig } from '../../src/sessions/sessionConfig.js';
import { WorkerError } from '../../src/errors.js';

const settings = { defaultMode: 'none', maxMode: 'open' } as const;
const code = (status: Status) => (err: unknown) => err instanceof WorkerError && err.code === status;

test('allow entries: names, wildcards, CIDRs, each with an optional port, normalised', () => {
  assert.deepEqual(parseAllowEntry('API.Example.com.'), { kind: 'name', name: 'api.example.com', wildcard: false, port: undefined });
  assert.deepEqual(parseAllowEntry('*.example.com:443'), { kind: 'name', name: 'example.com', wildcard: true, port: 443 });
  assert.deepEqual(parseAllowEntry('203.0.113.7/24:8080'), {
    kind: 'cidr',
    cidr: { base: ((203 << 24) + (0 << 16) + (113 << 8)) >>> 0, prefix: 24 },
    port: 8080,
  });
  assert.deepEqual(parseAllowEntry('10.1.2.3'), { kind: 'cidr', cidr: { base: ((10 << 24) + (1 << 16) + (2 << 8) + 3) >>> 0, prefix: 32 }, port: undefined });
  const policy = effectiveNetworkPolicy({ mode: 'allow_list', allow: ['Api.Test', 'api.test', '203.0.113.9/24', '*.b.test:8443'] }, settings);
  assert.deepEqual(policy, { mode: 'allow_list', allow: ['api.test', '203.0.113.0/24', '*.b.test:8443'] });
});

test('malformed allow entries are INVALID_ARGUMENT naming the entry', () => {
  for (const entry of [
    '',
    'a b',
    'x:0',
    'x:65536',
    'x:http',
    '300.1.1.1',
    '1.2.3.4/33',
    '[::1]:80',
    '2001:db8::/32',
    '*.',
    '*',
    '-a.test',
    'a..test',
    'x'.repeat(300),
  ]) {
    assert.throws(
      () => parseAllowEntry(entry),
      (err: unknown) => code(Status.INVALID_ARGUMENT)(err) && (err as WorkerError).details.includes('allow entry'),
      entry,
    );
  }
  assert.throws(
    () => effectiveNetworkPolicy({ mode: 'allow_list', allow: Array.from({ length: 257 }, (_, i) => `h${i}.test`) }, settings),
    code(Status.INVALID_ARGUMENT),
  );
  assert.throws(() => effectiveNetworkPolicy({ mode: 'none', allow: ['a.test'] }, settings), code(Status.INVALID_ARGUMENT));
  assert.throws(() => requestedNetworkPolicy({ mode: 42 as NetworkMode, allow: [] }), code(Status.INVALID_ARGUMENT));
});

test('the mode: unset is the default; past the ceiling is PERMISSION_DENIED naming WORKER_NETWORK_MAX', () => {
  assert.equal(effectiveNetworkPolicy(requestedNetworkPolicy(undefined), { defaultMode: 'allow_list', maxMode: 'open' }).mode, 'allow_list');
  assert.equal(effectiveNetworkPolicy(requestedNetworkPolicy({ mode: NetworkMode.NETWORK_MODE_UNSPECIFIED, allow: [] }), settings).mode, 'none');
  assert.equal(effectiveNetworkPolicy(requestedNetworkPolicy({ mode: NetworkMode.NETWORK_MODE_OPEN, allow: [] }), settings).mode, 'open');
  for (const [mode, max] of [
    ['open', 'allow_list'],
    ['allow_list', 'none'],
    ['open', 'none'],
  ] as const) {
    assert.throws(
      () => effectiveNetworkPolicy({ mode, allow: [] }, { defaultMode: 'none', maxMode: max }),
      (err: unknown) => code(Status.PERMISSION_DENIED)(err) && (err as WorkerError).details.includes(`WORKER_NETWORK_MAX=${max}`),
    );
  }
});

test('a policy comes back from the session record as it went in (generated policies)', () => {
  // A name all of digits and dots reads as an address (and is refused as one): labels start with a letter.
  const label = fc.stringMatching(/^[a-z]([a-z0-9_-]{0,8}[a-z0-9])?$/);
  const name = fc.tuple(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 4 })).map(([wild, labels]) => `${wild ? '*.' : ''}${labels.join('.')}`);
  const cidr = fc
    .tuple(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 32 }))
    .map(([o, p]) => `${o.join('.')}/${p}`);
  const entry = fc
    .tuple(fc.oneof(name, cidr), fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
    .map(([host, port]) => (port ? `${host}:${port}` : host));
  fc.assert(
    fc.property(fc.constantFrom('allow_list', 'open') as fc.Arbitrary<'allow_list' | 'open'>, fc.array(entry, { maxLength: 20 }), (mode, allow) => {
      const policy = effectiveNetworkPolicy({ mode, allow }, settings);
      const stored = storedSessionConfig(JSON.parse(JSON.stringify({ ...effectiveSessionConfig(undefined), network: policy })));
      assert.deepEqual(stored.network, policy);
      // Normalised once is normalised: the stored list parses to the same rules.
      assert.deepEqual(
        policy.allow.map((e) => allowEntryText(parseAllowEntry(e))),
        policy.allow,
      );
    }),
    { numRuns: 300 },
  );
});
