import { hash, timingSafeEqual } from 'node:crypto';
import type { CallContext, ServerMiddleware } from 'nice-grpc';
import { errors } from '../errors.js';

const digest = (text: string) => hash('sha256', text, 'buffer');

/** Throws UNAUTHENTICATED unless a call's context carries the token. */
export type TokenCheck = (context: CallContext) => void;

/**
 * Every call must carry `authorization: Bearer <token>`. The comparison is of SHA-256 digests in
 * constant time, so neither the token's length nor how much of it matched shows in the timing;
 * a refusal says nothing else. (Health checks are added without this check.)
 */
export function tokenCheck(token: string): TokenCheck {
  const expected = digest(`Bearer ${token}`);
  return (context) => {
    const given = context.metadata.get('authorization') ?? '';
    if (!timingSafeEqual(digest(given), expected)) throw errors.unauthenticated();
  };
}

/** The token check as a middleware of its own (where calls are not observed: observeCalls.ts runs it otherwise). */
export function authenticate(check: TokenCheck): ServerMiddleware {
  return async function* checkToken(call, context) {
    check(context);
    return yield* call.next(call.request, context);
  };
}
