import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { effectiveSessionConfig, ENV_LIMITS } from '../../src/sessions/sessionConfig.js';

const withEnv = (env: Record<string, string>) => effectiveSessionConfig({ language: 'python', env, limits: undefined });
const refused = (env: Record<string, string>, pattern: RegExp) =>
  assert.throws(
    () => withEnv(env),
    (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details) && err.details.length <= 1024,
  );

test('a session environment within the limits is kept as given', () => {
  const env = { PYTHONPATH: '/workspace', BIG: 'x'.repeat(ENV_LIMITS.valueBytes), LD_PRELOAD: '/workspace/x.so' };
  assert.deepEqual(withEnv(env).env, env);
});

test('session environments past a limit or with bad names are refused, naming what and the limit', () => {
  refused({ BIG: 'x'.repeat(200_000) }, /BIG.*200000 bytes; at most 32768/);
  refused(Object.fromEntries(Array.from({ length: ENV_LIMITS.variables + 1 }, (_, i) => [`V${i}`, '1'])), /129 variables; at most 128/);
  refused({ ['N'.repeat(300)]: '1' }, /300 characters long; at most 128/);
  refused({ 'A=B': '1' }, /not a valid environment variable name/);
  refused({ '1A': '1' }, /not a valid environment variable name/);
  refused({ A: 'a\0b' }, /NUL byte/);
  refused(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`V${i}`, 'x'.repeat(30 * 1024)])), /in all; at most 131072/);
});
