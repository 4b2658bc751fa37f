import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { runTask } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// WORKER_CACHE_SCOPE=user: one user learns nothing of another's installs. With shared caches a
// session can tell, by a ten-fold faster install and its output (INSTALLER codegen-worker), that
// another session installed the same list minutes before; per user, only its own installs count.

let index: PackageIndex;
let worker: RunningWorker;

before(async () => {
  index = await servePackageIndex([{ name: 'tinydep', version: '1.2.0', files: { 'tinydep/__init__.py': 'ANSWER = 42\n' } }]);
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url, WORKER_CACHE_SCOPE: 'user' } });
});

after(async () => {
  await worker?.stop();
  await index?.close();
});

/** Installs tinydep in a new session of `userId`; says who laid it out (pip, or the wheel store's installer). */
async function installAs(userId: string): Promise<string> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: `w-${userId}`, userId });
  const install = await runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'tinydep==1.2.0' } });
  assert.equal(install.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(install.result));
  const who = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import importlib.metadata as md\nprint(md.distribution("tinydep").read_text("INSTALLER").strip())' },
  });
  await worker.sessions.destroySession({ sessionId });
  return who.result!.outputs.stdout!.trim();
}

test("per user: another user's install is not reused (nor seen); the same user's is", async () => {
  assert.equal(await installAs('alice'), 'pip');
  assert.equal(await installAs('bob'), 'pip', "bob's install owes nothing to alice's");
  assert.equal(await installAs('alice'), 'codegen-worker', "alice's second session reuses her own");
  const users = readdirSync(join(worker.dataDir, 'caches', 'pip-cache', 'users'));
  assert.equal(users.length, 2, `one pip cache per user: ${users.join(', ')}`);
  assert.ok(users.every((u) => /^u-[0-9a-f]{32}$/.test(u)));
  assert.deepEqual(readdirSync(join(worker.dataDir, 'caches', 'pip-cache')), ['users'], 'nothing in the shared one');
});
