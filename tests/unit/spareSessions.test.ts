import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deferred } from '../../src/deferred.js';
import type { PreparedSandbox } from '../../src/sandbox/host/sandboxHost.js';
import { SpareSessions } from '../../src/sessions/spareSessions.js';
import { sessionLayout } from '../../src/storage/workspaceStore.js';
import { createLogger } from '../../src/logger.js';

// Start-up waits for the first spare (worker.ts): firstReady settles once one is made, at once
// when none is wanted, and when making one fails (start-up is never held by it).

const store = {
  create: async (name: string) => sessionLayout(`/fake/${name}`),
  rename: async (_from: string, to: string) => sessionLayout(`/fake/${to}`),
  remove: async () => undefined,
  directories: (name: string) => sessionLayout(`/fake/${name}`),
};
const logger = createLogger('error');
const settled = async (promise: Promise<void>) => (await Promise.race([promise.then(() => true), new Promise((r) => setImmediate(r, false))])) as boolean;

test('firstReady settles once the first spare is made, not before', async () => {
  const made = deferred<PreparedSandbox>();
  let calls = 0;
  // The first spare is made when the test says; the second never is (the refill never ends).
  const host = { prepare: () => (calls++ === 0 ? made.promise : new Promise<PreparedSandbox>(() => undefined)), discard: async () => undefined };
  const spares = new SpareSessions(store, host, 2, 0, logger);
  spares.refill();
  assert.equal(await settled(spares.firstReady()), false);
  made.resolve({ diskMb: 0 } as PreparedSandbox);
  assert.equal(await settled(spares.firstReady()), true);
});

test('firstReady settles at once when no spare is wanted, and when making them fails', async () => {
  const none = new SpareSessions(store, { prepare: () => new Promise(() => undefined), discard: async () => undefined }, 0, 0, logger);
  assert.equal(await settled(none.firstReady()), true);
  const failing = new SpareSessions(store, { prepare: () => Promise.reject(new Error('no loop device')), discard: async () => undefined }, 2, 0, logger);
  failing.refill();
  await new Promise((r) => setImmediate(r));
  assert.equal(await settled(failing.firstReady()), true);
});
