import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { NetworkMode } from '../../gen/codegen/v1/common.js';
import { effectiveNetworkPolicy, parseAllowEntry, requestedNetworkPolicy } from '../../src/sandbox/network/networkPolicy.js';
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
