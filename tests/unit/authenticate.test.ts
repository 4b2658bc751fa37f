import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metadata, ServerError, Status, type CallContext, type ServerMiddleware } from 'nice-grpc';
import { authenticate, tokenCheck } from '../../src/grpc/authenticate.js';
import { observeCalls } from '../../src/grpc/observeCalls.js';
import { createLogger } from '../../src/logger.js';

// The middleware run as nice-grpc runs it: a generator around the call's own.

/** Whether the last call reached the service behind the middleware. */
let reached = false;

async function callWith(middleware: ServerMiddleware, authorization: string | string[] | undefined): Promise<{ reached: boolean; result: unknown }> {
  reached = false;
  const metadata = Metadata();
  for (const value of authorization === undefined ? [] : [authorization].flat()) metadata.append('authorization', value);
  const call = {
    method: { path: '/codegen.v1.SessionManagement/GetCapacity', requestStream: false, responseStream: false, options: {} },
    requestStream: false,
    responseStream: false,
    request: {},
    next: async function* () {
      reached = true;
      return 'response';
    },
  };
  const generator = middleware(call as never, { metadata } as unknown as CallContext) as AsyncGenerator<unknown, unknown>;
  const { value } = await generator.next();
  return { reached, result: value };
}

const unauthenticated = (err: unknown) => err instanceof ServerError && err.code === Status.UNAUTHENTICATED && err.details === 'missing or invalid credentials';

// The check runs as a middleware of its own, or inside observeCalls (where calls are observed).
const variants = [
  { name: 'authenticate', middleware: (token: string) => authenticate(tokenCheck(token)) },
  { name: 'observeCalls', middleware: (token: string) => observeCalls(createLogger('error'), tokenCheck(token)) },
];

for (const { name, middleware: guard } of variants) {
  test(`${name}: a call carrying \`authorization: Bearer <token>\` reaches the service`, async () => {
    assert.deepEqual(await callWith(guard('s3cret'), 'Bearer s3cret'), { reached: true, result: 'response' });
  });

  test(`${name}: a missing, wrong, differently spelt or prefix-matching token is UNAUTHENTICATED and never reaches the service`, async () => {
    const middleware = guard('s3cret');
    const repeated = [
      ['Bearer s3cret', 'Bearer s3cret'],
      ['Bearer s3cret', 'Bearer other'],
      ['Bearer other', 'Bearer s3cret'],
    ];
    for (const header of [
      undefined,
      '',
      's3cret',
      'Bearer s3cre',
      'Bearer s3cret ',
      'Bearer s3cretX',
      'bearer s3cret',
      'Basic s3cret',
      'Bearer  s3cret',
      ...repeated,
    ]) {
      await assert.rejects(callWith(middleware, header), unauthenticated, JSON.stringify(header));
      assert.equal(reached, false, 'the service was not called');
    }
  });
}
