import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { servePackageIndex, type PackageIndex } from '../helpers/packageIndex.js';
import { callTool } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// pkg.install's fetching step must run no package code: --only-binary=:all: only filters what
// pip picks from the index, and a dependency an index wheel declares by URL (Requires-Dist:
// x @ URL) is a source build pip prepares anyway, as the installer uid, with the host's network
// and the shared pip cache writable, one connection from the worker's gRPC API on loopback.
// (pypi.org refuses such uploads; private indexes and mirrors may not.) The fetching pip now
// runs under a filter forbidding exec, and pip runs every build hook in a subprocess.

let index: PackageIndex;
let files: HttpServer;
let listener: Server;
let listenerPort = 0;
let connections = 0;
let worker: RunningWorker;
let sdistDir: string;
/** When set, the payload served next also reads other sessions through the worker's API on this port. */
let apiPort = 0;
/** A stdlib-only gRPC client the payload would use against the worker's API. */
const CLIENT = readFileSync(new URL('../../../tests/helpers/h2grpc.py', import.meta.url), 'utf8');

const probe = (port: number) => `
import os, socket
def _probe():
    try:
        socket.create_connection(("127.0.0.1", ${port}), timeout=2).close()
        net = "connected"
    except Exception as e:
        net = "blocked:" + type(e).__name__
    try:
        with open(os.path.join(os.environ.get("PIP_CACHE_DIR", "/pip-cache"), "poison-from-fetch"), "w") as f:
            f.write("poisoned")
        cache = "written"
    except Exception as e:
        cache = "refused:" + type(e).__name__
    return os.getuid(), net, cache
_uid, _net, _cache = _probe()
print("PROBE uid=%d net=%s cache=%s" % (_uid, _net, _cache))
`;

function buildSdist(backendSource: string): Buffer {
  const out = join(sdistDir, 'payload-1.0.tar.gz');
  execFileSync('python3', [
    '-c',
    `
import io, sys, tarfile
files = {"payload-1.0/pyproject.toml": '[build-system]\\nrequires = []\\nbuild-backend = "be"\\nbackend-path = ["."]\\n\\n[project]\\nname = "payload"\\nversion = "1.0"\\n', "payload-1.0/be.py": sys.argv[2]}
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name, text in files.items():
        data = text.encode(); info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
`,
    out,
    backendSource,
  ]);
  return readFileSync(out);
}

before(async () => {
  listener = createServer((s) => {
    connections++;
    s.end();
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  listenerPort = (listener.address() as { port: number }).port;
  sdistDir = mkdtempSync(join(tmpdir(), 'codegen-sdist-'));
  files = createHttpServer((_req, res) => {
    const source = probe(listenerPort) + (apiPort ? `ONLY_PORT = ${apiPort}\n${CLIENT}\n` : '') + 'raise RuntimeError("payload done")\n';
    res.setHeader('content-type', 'application/octet-stream');
    res.end(buildSdist(source));
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  const filesPort = (files.address() as { port: number }).port;
  index = await servePackageIndex([
    { name: 'evilpkg', version: '1.0', files: { 'evilpkg.py': 'X = 1\n' }, requires: [`payload @ http://127.0.0.1:${filesPort}/payload-1.0.tar.gz`] },
  ]);
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url, WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => {
  await stopHard(worker, 3_000);
  listener?.close();
  files?.close();
  await index?.close();
  rmSync(sdistDir, { recursive: true, force: true });
});

test('an index package depending on a URL makes the fetching step run no package code', async (t) => {
  const sessionId = (await worker.sessions.createSession({ workspaceId: 'fetch' }, { deadline: 10_000 })).sessionId;
  const install = await callTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'evilpkg' }, 90_000);
  const seen = /PROBE uid=(\d+) net=(\S+) cache=(\S+)/.exec(install.text);
  const ready = worker.logs.find((l) => l.message === 'sandbox ready');
  const cacheFiles = readdirSync(join(worker.dataDir, 'caches', 'pip-cache')).filter((n) => n.startsWith('poison'));
  t.diagnostic(`pkg.install evilpkg: ${Status[install.code]}; ${seen?.[0] ?? 'no probe line: ' + install.text.slice(-600)}`);
  t.diagnostic(
    `worker: ${String(ready?.session_uids)}; network=${String(ready?.network)}; loopback connections: ${connections}; pip-cache: ${cacheFiles.join(',') || 'clean'}`,
  );
  assert.equal(seen, null, `the fetching step ran the session-chosen package's build code: ${seen?.[0]}`);
  assert.equal(connections, 0, 'nothing reached the loopback listener');
  assert.deepEqual(cacheFiles, [], 'nothing was written into the shared pip cache');
});

test("…so no such code reads another session's files through the worker's API", async (t) => {
  const victim = (await worker.sessions.createSession({ workspaceId: 'victim', userId: 'alice' }, { deadline: 10_000 })).sessionId;
  await callTool(worker.tasks, victim, 'fs.write', { path: 'secret.txt', contents: "TOP SECRET of alice's session" }, 10_000);
  const attacker = (await worker.sessions.createSession({ workspaceId: 'attacker', userId: 'mallory' }, { deadline: 10_000 })).sessionId;
  apiPort = Number(worker.address.split(':')[1]);
  const install = await callTool(worker.tasks, attacker, 'pkg.install', { requirements: 'evilpkg' }, 90_000);
  const line = new RegExp(`${victim} -> [^\\n]*`).exec(install.text)?.[0] ?? install.text.slice(-800);
  t.diagnostic(`installer-run payload: ${line}`);
  assert.doesNotMatch(line, /TOP SECRET/, "the fetching step's payload read another session's file through the worker's API");
});
