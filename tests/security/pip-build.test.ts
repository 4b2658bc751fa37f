import assert from 'node:assert/strict';
import { lstatSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { servePackageIndex, type PackageIndex } from '../helpers/packageIndex.js';
import { callTool, type ToolCall } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "pkg.install runs session code with the installer's powers": a local project's build backend
// is code the session wrote. It must run as the session's own uid, with the session's network
// policy (none), and must not be able to write anything another session's installs read.

let index: PackageIndex;
let worker: RunningWorker;
let listener: Server;
let listenerPort: number;
let connections = 0;

function describeText(c: ToolCall): string {
  return `code ${Status[c.code]} ${c.details}\n${c.text.slice(-3000)}`;
}

/** Host paths under `dir` whose name starts with `poison-` (no symlinks followed). */
function poisonFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(d, name);
      if (name.startsWith('poison-')) found.push(path);
      try {
        if (lstatSync(path).isDirectory()) walk(path);
      } catch {
        // gone meanwhile
      }
    }
  };
  walk(dir);
  return found;
}

const backend = (port: number) => `
import os, socket, uuid

def _probe():
    uid = os.getuid()
    try:
        s = socket.create_connection(("127.0.0.1", ${port}), timeout=2)
        s.close()
        net = "connected"
    except Exception as e:
        net = "blocked:" + type(e).__name__
    candidates = [os.environ.get("PIP_CACHE_DIR"), os.path.expanduser("~/.cache/pip"), "/pip-cache"]
    for root, dirs, files in os.walk("/", onerror=lambda e: None):
        if root in ("/proc", "/sys", "/dev", "/usr"):
            dirs[:] = []
            continue
        for d in dirs:
            low = d.lower()
            if ("pip" in low and "cache" in low) or (d == "pip" and os.path.basename(root) == ".cache"):
                candidates.append(os.path.join(root, d))
    written = []
    for c in dict.fromkeys(x for x in candidates if x):
        try:
            with open(os.path.join(c, "poison-" + uuid.uuid4().hex), "w") as f:
                f.write("poisoned")
            written.append(c)
        except Exception:
            pass
    return uid, net, written

_uid, _net, _written = _probe()
raise RuntimeError("PROBE uid=%d net=%s cache=%s" % (_uid, _net, ",".join(_written) or "none"))
`;

before(async () => {
  index = await servePackageIndex([{ name: 'tinydep', version: '1.2.0', files: { 'tinydep.py': 'VALUE = 7\n' } }]);
  listener = createServer((socket) => {
    connections++;
    socket.end();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listenerPort = (listener.address() as { port: number }).port;
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url } });
});

after(async () => {
  await stopHard(worker);
  listener?.close();
  await index?.close();
});

test("a local project's build backend runs with the session's powers, not the installer's", async () => {
  const attacker = (await worker.sessions.createSession({ workspaceId: 'attacker' }, { deadline: 15_000 })).sessionId;
  const whoami = await callTool(worker.tasks, attacker, 'run.python', { code: 'import os\nprint(os.getuid())' }, 30_000);
  assert.equal(whoami.code, Status.OK, describeText(whoami));
  const sessionUid = Number(whoami.result?.outputs.stdout?.trim());
  assert.ok(Number.isInteger(sessionUid), describeText(whoami));

  const pyproject = '[build-system]\nrequires = []\nbuild-backend = "probe_backend"\nbackend-path = ["."]\n\n[project]\nname = "probe"\nversion = "0.1"\n';
  for (const [path, contents] of [
    ['pkg/pyproject.toml', pyproject],
    ['pkg/probe_backend.py', backend(listenerPort)],
  ] as const) {
    const written = await callTool(worker.tasks, attacker, 'fs.write', { path, contents }, 15_000);
    assert.equal(written.code, Status.OK, describeText(written));
  }

  const install = await callTool(worker.tasks, attacker, 'pkg.install', { requirements: 'probe @ file:///workspace/pkg' }, 60_000);
  assert.notEqual(install.code, Status.DEADLINE_EXCEEDED, describeText(install));
  const probe = /PROBE uid=(\d+) net=(\S+) cache=(\S+)/.exec(install.text);
  const seen = probe ? probe[0] : 'no PROBE line in the output';

  const failures: string[] = [];
  if (connections !== 0) failures.push(`the build backend reached a TCP listener on the host's loopback (${connections} connection(s))`);
  const poison = poisonFiles(worker.dataDir);
  if (poison.length > 0) failures.push(`the build backend wrote into the worker's data directory: ${poison.join(', ')}`);
  if (probe && Number(probe[1]) !== sessionUid) failures.push(`the build backend ran as uid ${probe[1]}; the session's code runs as ${sessionUid}`);
  assert.deepEqual(failures, [], `${failures.join('\n')}\n(${seen})`);

  // The attacker's session itself still works.
  const still = await callTool(worker.tasks, attacker, 'run.python', { code: 'print(6*7)' }, 30_000);
  assert.equal(still.result?.outputs.stdout, '42\n', describeText(still));
});

test('packages from the index still install in a clean session', async () => {
  const clean = (await worker.sessions.createSession({ workspaceId: 'clean' }, { deadline: 15_000 })).sessionId;
  const install = await callTool(worker.tasks, clean, 'pkg.install', { requirements: 'tinydep' }, 60_000);
  assert.equal(install.code, Status.OK, describeText(install));
  const run = await callTool(worker.tasks, clean, 'run.python', { code: 'import tinydep\nprint(tinydep.VALUE)' }, 60_000);
  assert.equal(run.result?.outputs.stdout, '7\n', describeText(run));
});
