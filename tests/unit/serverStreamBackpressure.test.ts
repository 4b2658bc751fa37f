// unit: own process (it patches grpc-js for the whole process: tests/unit-tier.sh)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyServerStreamBackpressure, patchedStream } from '../../src/grpc/serverStreamBackpressure.js';

// The patch of grpc-js in src/grpc/serverStreamBackpressure.ts: an upgrade that renames or
// reshapes the class it patches fails here, not in production.

test("grpc-js's server stream, patched, asks its writer to wait after one message until that message is sent", async () => {
  applyServerStreamBackpressure();
  const sent: ((err?: Error) => void)[] = [];
  const call = { sendMessage: (_chunk: unknown, done: (err?: Error) => void) => sent.push(done) };
  const Stream = patchedStream as unknown as new (path: string, call: unknown, metadata: unknown, request: unknown) => import('node:stream').Writable;
  const stream = new Stream('/x', call, {}, {});
  assert.equal(stream.write({ big: 'reply' }), false, 'one message pending: wait');
  const drained = new Promise((resolve) => stream.once('drain', resolve));
  assert.equal(sent.length, 1, 'handed to the call at once');
  sent[0]!();
  await drained;
  assert.equal(stream.write({ next: 'reply' }), false);
});
