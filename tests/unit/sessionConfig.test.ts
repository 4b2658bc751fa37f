import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { effectiveSessionConfig, nonNegative } from '../../src/sessions/sessionConfig.js';

const invalid = (pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details);
const limits = (over: Partial<{ maxMemoryMb: number; maxCpuPercent: number; maxDiskMb: number; timeoutSeconds: number }>) => ({
  maxMemoryMb: 0,
  maxCpuPercent: 0,
  maxDiskMb: 0,
  timeoutSeconds: 0,
  ...over,
});

test('no config at all is python with no limits and an empty environment', () => {
  const expected = { language: 'python', limits: limits({}), env: {}, network: { mode: 'none', allow: [] } };
  assert.deepEqual(effectiveSessionConfig(undefined), expected);
  assert.deepEqual(effectiveSessionConfig({ language: '', env: {}, limits: undefined }), expected);
});

test('given limits are kept as given', () => {
  const given = limits({ maxMemoryMb: 512, maxCpuPercent: 150, maxDiskMb: 64, timeoutSeconds: 30 });
  assert.deepEqual(effectiveSessionConfig({ language: 'python', env: { A: '1' }, limits: given }), {
    language: 'python',
    limits: given,
    env: { A: '1' },
    network: { mode: 'none', allow: [] },
  });
});

test('a language the worker does not offer is refused, quoting it and naming what it offers', () => {
  for (const language of ['ruby', 'Python', 'python3', 'x'.repeat(300)]) {
    assert.throws(
      () => effectiveSessionConfig({ language, env: {}, limits: undefined }),
      invalid(/^invalid argument: config\.language ".*" is not supported by this worker; supported: python, node, go$/),
      language.slice(0, 10),
    );
  }
  assert.throws(
    () => effectiveSessionConfig({ language: 'go', env: {}, limits: undefined }, ['python', 'node']),
    invalid(/^invalid argument: config\.language "go" is not supported by this worker; supported: python, node$/),
  );
  assert.equal(effectiveSessionConfig({ language: 'node', env: {}, limits: undefined }, ['python', 'node']).language, 'node');
});

test('a negative limit is refused, naming the field as the protos spell it', () => {
  for (const [field, name] of [
    ['maxMemoryMb', 'config.limits.max_memory_mb'],
    ['maxCpuPercent', 'config.limits.max_cpu_percent'],
    ['maxDiskMb', 'config.limits.max_disk_mb'],
    ['timeoutSeconds', 'config.limits.timeout_seconds'],
  ] as const) {
    assert.throws(
      () => effectiveSessionConfig({ language: 'python', env: {}, limits: limits({ [field]: -1 }) }),
      invalid(new RegExp(`^invalid argument: ${name.replace(/\./g, '\\.')} must not be negative, got -1$`)),
      field,
    );
  }
  assert.equal(nonNegative('x', 0), 0);
  assert.equal(nonNegative('x', 7), 7);
});

test('the effective environment is a copy: changing the request afterwards changes nothing', () => {
  const env = { A: '1' };
  const config = effectiveSessionConfig({ language: 'python', env, limits: undefined });
  env.A = '2';
  assert.equal(config.env.A, '1');
});
