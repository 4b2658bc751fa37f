import { createHash, timingSafeEqual } from 'node:crypto';
import type { ServerMiddleware } from 'nice-grpc';
import { errors } from '../errors.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Every call must carry `authorization: Bearer <token>`. The comparison is of SHA-256 digests in
 * constant time, so neither the token's length nor how much of it matched shows in the timing;
 * a refusal says nothing else. (Health checks are added without this middleware.)
 */
export function authenticate(token: string): ServerMiddleware {
  const expected = digest(`Bearer ${token}`);
  return async function* checkToken(call, context) {
    const given = context.metadata.get('authorization') ?? '';
    if (!timingSafeEqual(digest(given), expected)) throw errors.unauthenticated();
    return yield* call.next(call.request, context);
  };
}
