import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { toServerError, withMappedErrors } from '../../src/grpc/mapErrors.js';
import type { Logger } from '../../src/logger.js';

/** A logger that records what it is given (only `error` is used here). */
function fakeLogger() {
  const logged: { message: string; meta: Record<string, unknown> }[] = [];
  const logger = { error: (message: string, meta: Record<string, unknown>) => void logged.push({ message, meta }) } as unknown as Logger;
  return { logger, logged };
}

test('a WorkerError (any ServerError) passes unchanged and is not logged', () => {
  const { logger, logged } = fakeLogger();
  const worker = new WorkerError(Status.NOT_FOUND, 'gone');
  assert.equal(toServerError(worker, 'S/M', logger), worker);
  const plain = new ServerError(Status.UNAVAILABLE, 'later');
  assert.equal(toServerError(plain, 'S/M', logger), plain);
  assert.equal(logged.length, 0);
});

test('an AbortError (the call was cancelled) passes unchanged', () => {
  const { logger, logged } = fakeLogger();
  const abort = new AbortError();
  assert.equal(toServerError(abort, 'S/M', logger), abort);
  assert.equal(logged.length, 0);
});

test('anything else becomes INTERNAL with its kind and a reference; the log line under that reference has the rest', () => {
  const { logger, logged } = fakeLogger();
  const secret = Object.assign(new Error("EACCES: permission denied, open '/srv/worker/secret'"), { code: 'EACCES', syscall: 'open' });
  const mapped = toServerError(secret, 'codegen.v1.SessionManagement/CreateSession', logger);
  assert.ok(mapped instanceof WorkerError);
  assert.equal(mapped.code, Status.INTERNAL);
  const ref = /reference ([0-9a-f]{8}) in the worker's log/.exec(mapped.details)?.[1];
  assert.ok(ref, mapped.details);
  assert.match(mapped.details, /^internal error \(EACCES in open\)/);
  assert.ok(!mapped.details.includes('/srv') && !mapped.details.includes('permission denied'), 'nothing of the message reaches the client');
  assert.equal(logged.length, 1);
  assert.equal(logged[0]!.meta.ref, ref);
  assert.equal(logged[0]!.meta.method, 'codegen.v1.SessionManagement/CreateSession');
  assert.match(String(logged[0]!.meta.error), /\/srv\/worker\/secret/, 'the log keeps the whole error');
});

test('thrown values that are not Errors are mapped too, each with a fresh reference', () => {
  const { logger, logged } = fakeLogger();
  const a = toServerError('a string', 'S/M', logger) as WorkerError;
  const b = toServerError({ weird: true }, 'S/M', logger) as WorkerError;
  assert.equal(a.code, Status.INTERNAL);
  assert.match(a.details, /^internal error \(an unexpected error\)/);
  assert.equal(logged[0]!.meta.error, 'a string');
  assert.equal(b.code, Status.INTERNAL);
  assert.notEqual(logged[0]!.meta.ref, logged[1]!.meta.ref);
});

test('a thrown undefined or null is mapped to INTERNAL like anything else', () => {
  const { logger, logged } = fakeLogger();
  for (const value of [undefined, null]) {
    const mapped = toServerError(value, 'S/M', logger) as WorkerError;
    assert.equal(mapped.code, Status.INTERNAL);
    assert.match(mapped.details, /reference [0-9a-f]{8} in the worker's log$/);
  }
  assert.deepEqual(
    logged.map((entry) => entry.meta.error),
    ['undefined', 'null'],
  );
});

test('withMappedErrors maps the errors of unary methods, keeps their results and `this`, and leaves streaming methods as they are', async () => {
  const { logger, logged } = fakeLogger();
  const definition = {
    name: 'Svc',
    methods: { ok: { responseStream: false }, fails: { responseStream: false }, refuses: { responseStream: false }, stream: { responseStream: true } },
  };
  const implementation = {
    prefix: 'hello ',
    async ok(this: { prefix: string }, name: string) {
      return `${this.prefix}${name}`;
    },
    async fails() {
      throw new RangeError('/host/path');
    },
    async refuses() {
      throw new WorkerError(Status.INVALID_ARGUMENT, 'no');
    },
    async *stream() {
      yield 1;
    },
  };
  const wrapped = withMappedErrors(
    definition,
    implementation as unknown as Record<string, (...args: never[]) => unknown>,
    logger,
  ) as unknown as typeof implementation;
  assert.equal(await wrapped.ok('x'), 'hello x', 'run with the implementation as this');
  await assert.rejects(
    wrapped.fails(),
    (err: unknown) => err instanceof WorkerError && err.code === Status.INTERNAL && /^internal error \(RangeError\)/.test(err.details),
  );
  assert.equal(logged[0]!.meta.method, 'Svc/fails');
  await assert.rejects(wrapped.refuses(), (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT);
  assert.equal(wrapped.stream, implementation.stream, 'streaming methods are not wrapped');
});
