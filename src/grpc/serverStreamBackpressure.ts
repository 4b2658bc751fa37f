import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';

/**
 * A patch of grpc-js (1.14), in this one file. Its server stream is a Writable in object mode
 * with Node's default high-water mark of 16 messages, so write() of a reply returns true at once
 * however large it is and however slowly the client reads: nice-grpc then asks the task for its
 * next message and the call ends while its reply still waits to be sent, and replies queue
 * without bound (70 concurrent fs.read calls of 60 MB held 4.7 GB). With a high-water mark of one
 * message, write() returns false until the message has gone to the socket, and nice-grpc waits
 * for 'drain' (or the call's end) before it goes on: what a call holds (sessions/payloadBudget.ts)
 * is held until its reply has left. tests/unit/serverStreamBackpressure.test.ts checks that the
 * patched class is the one grpc-js uses and behaves so.
 */

interface WritableState {
  highWaterMark: number;
}

const require = createRequire(import.meta.url);
const serverCall = require('@grpc/grpc-js/build/src/server-call') as { ServerWritableStreamImpl: { prototype: Writable } };

let applied = false;

/** Makes every grpc-js server stream hold one message at most before write() says to wait. */
export function applyServerStreamBackpressure(): void {
  if (applied) return;
  applied = true;
  const prototype = serverCall.ServerWritableStreamImpl.prototype;
  const write = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(prototype), 'write')!.value as (...args: unknown[]) => boolean;
  prototype.write = function (this: Writable & { _writableState: WritableState }, ...args: unknown[]): boolean {
    this._writableState.highWaterMark = 1;
    return write.apply(this, args);
  } as Writable['write'];
}

/** The class patched (for its test). */
export const patchedStream = serverCall.ServerWritableStreamImpl;
