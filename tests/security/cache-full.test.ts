import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { serveGoProxy, type GoProxy } from '../helpers/goProxy.js';
import { callTool, describeCall, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// An install larger than the package caches' disk (WORKER_CACHE_DISK_MB): go's step 1 needs the
// module in the shared module cache, which cannot hold it. The worker empties the caches and tries
// once more; failing again, the install is RESOURCE_EXHAUSTED naming the limit, for that session
// alone: the next install (another session's) works, and the caches were emptied for it.

const MB = 1024 * 1024;
let proxy: GoProxy;
let worker: RunningWorker;

before(async () => {
  proxy = await serveGoProxy([
    { path: 'big.example/huge', version: 'v1.0.0', files: { 'huge.go': 'package huge\n' }, randomFiles: { 'blob.bin': 24 * MB } },
    { path: 'small.example/tiny', version: 'v1.0.0', files: { 'tiny.go': 'package tiny\n\nfunc Answer() int { return 42 }\n' } },
  ]);
  worker = await startWorker({ env: { WORKER_LANGUAGES: 'go', WORKER_GOPROXY: proxy.url, WORKER_CACHE_DISK_MB: '16', WORKER_SPARE_SESSIONS: '0' } });
});

after(async () => {
  await worker?.stop();
  await proxy?.close();
});

test('an install the caches cannot hold, even emptied, is RESOURCE_EXHAUSTED naming WORKER_CACHE_DISK_MB; the next install works', async () => {
  const session = async (name: string) => (await worker.sessions.createSession({ workspaceId: name, config: { language: 'go' } })).sessionId;
  const filler = await session('huge');
  const neighbour = await session('tiny');
  const refused = await callTool(worker.tasks, filler, 'pkg.install', { requirements: 'big.example/huge@v1.0.0' }, 120_000);
  assert.equal(refused.code, Status.RESOURCE_EXHAUSTED, describeCall(refused));
  assert.match(refused.details, /package caches are full.*WORKER_CACHE_DISK_MB 16 MB/, describeCall(refused));
  const zips = proxy.requests.filter((r) => r === '/big.example/huge/@v/v1.0.0.zip').length;
  assert.equal(zips, 2, 'tried once more after emptying the caches, and no more');

  assert.equal((await runTool(worker.tasks, neighbour, 'pkg.install', { requirements: 'small.example/tiny@v1.0.0' })).installed, 'small.example/tiny@v1.0.0');
  assert.ok(
    worker.logs.some((l) => l.message === 'package caches emptied'),
    'the caches were emptied',
  );
  const ready = worker.logs.find((l) => l.message === 'sandbox ready');
  assert.match(String(ready?.package_caches), /an ext4 image of 16 MB/);
});
