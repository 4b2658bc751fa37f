import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import { NetworkMode, TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { runTask, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// Issue 22, point 3: pkg.install's fetching step (the installer uid, on the host's network)
// reaches the configured index and nothing else of the host; the session's own code, under
// NONE, reaches not even the index.

let index: PackageIndex;
let worker: RunningWorker;
let trap: Server;
let trapped = 0;

before(async () => {
  index = await servePackageIndex([{ name: 'alpha', version: '1.0', files: { 'alpha/__init__.py': 'X = "alpha"\n' } }]);
  trap = createServer((socket) => {
    trapped++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url } });
});
after(async () => {
  await worker?.stop();
  await index?.close();
  trap?.close();
});

const portOf = (server: Server) => (server.address() as { port: number }).port;

test('under NONE pkg.install installs from the loopback index, and the session code cannot reach that index', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'pkg', config: { network: { mode: NetworkMode.NETWORK_MODE_NONE, allow: [] } } });
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'alpha' });
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'import alpha; print(alpha.X)' })).stdout, 'alpha\n');
  const seen = index.requests.length;
  const url = new URL(index.url);
  const code = `import socket\ntry:\n    socket.create_connection(("${url.hostname}", ${url.port}), timeout=3).sendall(b"GET /simple/ HTTP/1.0\\r\\n\\r\\n"); print("reached")\nexcept OSError as e:\n    print("refused", type(e).__name__)`;
  assert.match((await runTool(worker.tasks, sessionId, 'run.python', { code })).stdout!, /^refused/);
  assert.equal(index.requests.length, seen, 'the index saw nothing of the session');
});

// One port stands for all (the worker's own are refused the same way): pip retries a refused
// connection for seconds.
test("pkg.install's fetching step reaches nothing of the host but its sources: another loopback port no", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'pkg' });
  const requirements = `trap @ http://127.0.0.1:${portOf(trap)}/trap-1.0-py3-none-any.whl`;
  const run = await runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements } });
  assert.notEqual(run.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(run.result));
  assert.equal(trapped, 0, 'the trap on loopback saw no connection');
});

test('under OPEN pkg.install still installs from the loopback index (its session step needs no index)', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'pkg', config: { network: { mode: NetworkMode.NETWORK_MODE_OPEN, allow: [] } } });
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'alpha' });
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'import alpha; print(alpha.X)' })).stdout, 'alpha\n');
});
