import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { runTask } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// Attacks on the wheel store (found by a review of its first version, each failing there). The worker's index is a proxy in front of two indexes:
// "before" (alpha 1.0) and "after" (alpha 1.0 and 1.1, i.e. a release published meanwhile).

let oldIndex: PackageIndex;
let newIndex: PackageIndex;
let proxy: Server;
let backend: PackageIndex;
let proxied = 0;
let worker: RunningWorker;

before(async () => {
  const beta = { name: 'beta', version: '2.0', files: { 'beta/__init__.py': 'Y = "beta"\n' } };
  oldIndex = await servePackageIndex([{ name: 'alpha', version: '1.0', files: { 'alpha/__init__.py': 'X = "1.0"\n' }, requires: ['beta'] }, beta]);
  newIndex = await servePackageIndex([
    { name: 'alpha', version: '1.0', files: { 'alpha/__init__.py': 'X = "1.0"\n' }, requires: ['beta'] },
    { name: 'alpha', version: '1.1', files: { 'alpha/__init__.py': 'X = "1.1 (the fix)"\n' }, requires: ['beta'] },
    beta,
  ]);
  backend = oldIndex;
  proxy = createServer((req, res) => {
    proxied++;
    const target = new URL(backend.url);
    const out = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: `http://127.0.0.1:${port}/simple/` } });
});

after(async () => {
  await worker?.stop();
  proxy?.closeAllConnections();
  await new Promise((resolve) => proxy?.close(resolve));
  await oldIndex?.close();
  await newIndex?.close();
});

async function install(sessionId: string, requirements: string) {
  return runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements } });
}

async function python(sessionId: string, code: string): Promise<string> {
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code } });
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(run.result));
  return run.result!.outputs.stdout!.trim();
}

const session = async () => (await worker.sessions.createSession({ workspaceId: 'attack' })).sessionId;

test('a release published after another session installed is seen at once, as pip (which reads every index page afresh) sees it', async () => {
  const a = await session();
  const b = await session();
  const c = await session();
  const first = await install(a, 'alpha');
  assert.equal(first.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(first.result));
  assert.equal(await python(a, 'import alpha; print(alpha.X)'), '1.0');

  backend = newIndex; // alpha 1.1 published
  const asked = proxied;
  const stale = await install(b, 'alpha');
  assert.equal(stale.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(stale.result));
  // Session b learns that someone installed exactly "alpha" in the last ten minutes: no index
  // request, no "Collecting" line.
  console.log('index asked by b:', proxied - asked, '| b stdout:', JSON.stringify(stale.result!.outputs.stdout));
  const got = await python(b, 'import alpha; print(alpha.X)');

  // What pip gives for the same list (a key the store does not know: "Alpha").
  const fresh = await install(c, 'Alpha');
  assert.equal(fresh.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(fresh.result));
  const pipGives = await python(c, 'import alpha; print(alpha.X)');
  assert.equal(pipGives, '1.1 (the fix)');
  assert.equal(got, pipGives, 'session b got the stale resolution, not what pip would have installed');
});

test('the root worker streams a fetched wheel into the store (its peak RSS does not grow by the wheel size)', async () => {
  const { mkdtemp, rm, readFile: read } = await import('node:fs/promises');
  const { execFileSync } = await import('node:child_process');
  const { createReadStream } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { createHash } = await import('node:crypto');
  const dir = await mkdtemp(join(tmpdir(), 'big-wheel-'));
  const MB = 64;
  const name = 'bigpkg-1.0-py3-none-any.whl';
  execFileSync('python3', [
    '-c',
    `import os, zipfile, sys
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as z:
    z.writestr("bigpkg/__init__.py", "")
    with z.open("bigpkg/blob.bin", "w", force_zip64=True) as f:
        for _ in range(${MB}):
            f.write(os.urandom(1 << 20))
    z.writestr("bigpkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\\nName: bigpkg\\nVersion: 1.0\\n")
    z.writestr("bigpkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
    z.writestr("bigpkg-1.0.dist-info/RECORD", "")`,
    join(dir, name),
  ]);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(join(dir, name))) hash.update(chunk as Buffer);
  const sha = hash.digest('hex');
  const bigIndex: PackageIndex = {
    url: '',
    requests: [],
    close: async () => undefined,
  };
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/simple/bigpkg')) {
      res.setHeader('content-type', 'text/html');
      res.end(`<a href="/files/${name}#sha256=${sha}">${name}</a>`);
    } else if (req.url === `/files/${name}`) {
      createReadStream(join(dir, name)).pipe(res);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  bigIndex.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/simple/`;
  const saved = backend;
  backend = bigIndex;
  const hwm = async () => Number(/VmHWM:\s+(\d+)/.exec(await read(`/proc/${worker.process.pid}/status`, 'utf8'))![1]) / 1024;
  try {
    const before = await hwm();
    const a = await session();
    const run = await install(a, 'bigpkg');
    assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(run.result).slice(-1500));
    const peak = await hwm();
    console.log(`worker peak RSS: ${before.toFixed(0)} MB before, ${peak.toFixed(0)} MB after a ${MB} MB wheel`);
    assert.ok(peak - before < MB / 2, `the worker's peak RSS grew by ${(peak - before).toFixed(0)} MB copying one wheel`);
  } finally {
    backend = saved;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  }
});

test('the fast path compiles bytecode where pip does (the environment is read-only to the session afterwards)', async () => {
  backend = oldIndex;
  const a = await session();
  const b = await session();
  const CHECK = 'import os, sysconfig; d = os.path.join(sysconfig.get_paths()["purelib"], "beta"); print(sorted(os.listdir(d)))';
  assert.equal((await install(a, 'beta')).result?.status, TaskStatus.STATUS_SUCCESS);
  assert.equal((await install(b, 'beta')).result?.status, TaskStatus.STATUS_SUCCESS);
  const pip = await python(a, CHECK);
  const fast = await python(b, CHECK);
  console.log('pip:', pip, '| fast path:', fast);
  assert.equal(fast, pip);
});
