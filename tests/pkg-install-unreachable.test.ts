import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTask } from './helpers/tasks.js';
import { startWorker } from './helpers/worker.js';

// A package source that cannot be reached is said so at once: pip retried a refused connection
// for seconds and then said the index had "no wheel" for the packages.

for (const [source, why] of [
  ['http://127.0.0.1:1/simple/', /connection refused at 127\.0\.0\.1:1/],
  ['file:///nonexistent-package-index', /no such path/],
] as const) {
  test(`pkg.install against ${source} is UNAVAILABLE, naming the source and WORKER_PIP_INDEX_URL; nothing is installed`, async () => {
    const worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: source, WORKER_SPARE_SESSIONS: '0' } });
    try {
      const { sessionId } = await worker.sessions.createSession({ workspaceId: 'unreachable' });
      const run = await runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'requests' } });
      assert.equal(run.code, Status.UNAVAILABLE, JSON.stringify(run.result));
      assert.match(run.error!.details, new RegExp(`cannot reach the package source ${source.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
      assert.match(run.error!.details, why);
      assert.match(run.error!.details, /WORKER_PIP_INDEX_URL names it/);
      assert.doesNotMatch(run.error!.details, /no wheel/);
      // A list with nothing from the index (a local path) is not stopped by it.
      const local = await runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: './nothing-here' } });
      assert.notEqual(local.code, Status.UNAVAILABLE);
    } finally {
      await worker.stop();
    }
  });
}
