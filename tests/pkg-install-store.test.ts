import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PYPA_INSTALLER } from '../src/sandbox/languages/python/wheelInstaller.js';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { runTask } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// pkg.install of a list another session installed before takes the wheel store's fast path
// (no pip, no index): the result must be what pip would have made, as the session's own files.

let index: PackageIndex;
let worker: RunningWorker;

const CLI = 'def main():\n    print("beta tool ran")\n';
before(async () => {
  index = await servePackageIndex([
    { name: 'alpha', version: '1.0', files: { 'alpha/__init__.py': 'X = "alpha"\n' }, requires: ['beta'] },
    {
      name: 'beta',
      version: '2.0',
      files: {
        'beta/__init__.py': 'Y = "beta"\n',
        'beta/cli.py': CLI,
        'beta-2.0.dist-info/entry_points.txt': '[console_scripts]\nbeta-tool = beta.cli:main\n',
        'beta-2.0.data/scripts/beta-hello': '#!python\nprint("hello from a wheel script")\n',
        'beta-2.0.data/purelib/beta_extra.py': 'Z = "from .data/purelib"\n',
        'beta-2.0.data/platlib/beta_plat.py': 'P = "from .data/platlib"\n',
      },
    },
  ]);
  worker = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url } });
});

after(async () => {
  await worker?.stop();
  await index?.close();
});

async function install(sessionId: string, requirements: string) {
  return runTask(worker.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements } });
}

async function python(sessionId: string, code: string): Promise<string> {
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code } });
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(run.result));
  return run.result!.outputs.stdout!;
}

const INSPECT = `
import alpha, beta, importlib.metadata as md, os, subprocess, sysconfig
site = sysconfig.get_paths()["purelib"]
print(alpha.X, beta.Y, md.version("alpha"), md.version("beta"))
print(sorted(str(f) for f in md.files("beta") if "dist-info" not in str(f)))
print(sorted(os.listdir(os.path.join(site, "beta", "__pycache__"))))
print(os.path.exists(os.path.join(site, "alpha-1.0.dist-info", "REQUESTED")), os.path.exists(os.path.join(site, "beta-2.0.dist-info", "REQUESTED")))
hello = os.path.join(sysconfig.get_paths()["scripts"], "beta-hello")
print(subprocess.run(["beta-tool"], capture_output=True, text=True).stdout.strip(), "|", open(hello).readline().strip(), os.access(hello, os.X_OK))
print(all(os.stat(os.path.join(d, f)).st_uid == os.getuid() for d, _, fs in os.walk(os.path.join(site, "beta")) for f in fs))
`;

// File by file: every RECORD row in order, checked against the file it names (content hash, mode,
// owner), and every file in the distributions' directories named in RECORD. What differs from pip
// by design is masked: INSTALLER names the installer, and an entry point's launcher is generated
// from the installer's own template (only its #! line compared). Bytecode, which embeds its
// source's mtime, is listed without a hash by both.
const LAYOUT = `
import base64, csv, hashlib, importlib.metadata as md, os, stat, sysconfig
site = sysconfig.get_paths()["purelib"]
for name in ("alpha", "beta"):
    dist = md.distribution(name)
    launchers = {os.path.normpath(os.path.join(sysconfig.get_paths()["scripts"], e.name)) for e in dist.entry_points if e.group in ("console_scripts", "gui_scripts")}
    rows = list(csv.reader(dist.read_text("RECORD").splitlines()))
    print(name, len(rows), "rows")
    for path, digest, size in rows:
        full = os.path.normpath(os.path.join(site, path))
        st = os.lstat(full)
        with open(full, "rb") as f:
            content = f.read()
        actual = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        checked = "no hash" if digest == "" else "hash ok" if (digest, size) == (actual, str(len(content))) else "HASH MISMATCH"
        if full in launchers:
            digest, size = "launcher " + content.splitlines()[0].decode(), "-"
        elif path.endswith(".dist-info/INSTALLER"):
            digest, size = "-", "-"
        print(" ", path, digest, size, checked, oct(stat.S_IMODE(st.st_mode)), st.st_uid == os.getuid())
    recorded = {os.path.normpath(os.path.join(site, r[0])) for r in rows}
    tops = {r[0].split("/")[0] for r in rows if not r[0].startswith("..") and "/" in r[0]}
    unrecorded = sorted(os.path.relpath(os.path.join(d, f), site) for t in tops for d, _, fs in os.walk(os.path.join(site, t)) for f in fs if os.path.join(d, f) not in recorded)
    print("  not in RECORD:", unrecorded)
`;

test('a list another session installed is installed again from the wheel store, as pip would have', async () => {
  const first = (await worker.sessions.createSession({ workspaceId: 'store' })).sessionId;
  const second = (await worker.sessions.createSession({ workspaceId: 'store' })).sessionId;
  const slow = await install(first, 'alpha');
  assert.equal(slow.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(slow.result));
  const pipMade = await python(first, INSPECT);
  const pipLayout = await python(first, LAYOUT);
  const asked = index.requests.length;

  const fast = await install(second, 'alpha');
  assert.equal(fast.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(fast.result));
  // The worker read the two project pages (unchanged since the first install); pip did not run.
  assert.deepEqual(index.requests.slice(asked).sort(), ['/simple/alpha/', '/simple/beta/']);
  assert.doesNotMatch(fast.result!.outputs.stdout!, /Collecting/);
  assert.equal(fast.result?.outputs.installed, slow.result?.outputs.installed);
  assert.match(fast.result!.outputs.stdout!, /^Successfully installed alpha-1\.0 beta-2\.0$/m);
  assert.equal(await python(second, INSPECT), pipMade);
  assert.equal(await python(second, LAYOUT), pipLayout);

  // Installed already: pip decides (and says so), the store stays out of it.
  const again = await install(second, 'alpha');
  assert.equal(again.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(again.result));
  assert.ok(index.requests.length > asked, 'pip asked the index');
});

test("without PyPA's installer the worker says so once at start, and a list installed before goes through pip", async () => {
  // WORKER_PYTHON is python3 told that installer is elsewhere when the worker asks it.
  const dir = await mkdtemp(join(tmpdir(), 'no-installer-'));
  const python3 = join(dir, 'python3');
  await writeFile(python3, `#!/bin/sh\nfor a; do shift; [ "$a" = ${PYPA_INSTALLER} ] && a=/nonexistent; set -- "$@" "$a"; done\nexec python3 "$@"\n`, {
    mode: 0o755,
  });
  const other = await startWorker({ env: { WORKER_PIP_INDEX_URL: index.url, WORKER_PYTHON: python3 } });
  try {
    assert.equal(other.logs.filter((l) => String(l.message).includes("PyPA's installer")).length, 1, JSON.stringify(other.logs));
    for (const workspaceId of ['first', 'second']) {
      const { sessionId } = await other.sessions.createSession({ workspaceId });
      const run = await runTask(other.tasks, { sessionId, toolName: 'pkg.install', arguments: { requirements: 'alpha' } });
      assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(run.result));
      assert.match(run.result!.outputs.stdout ?? '', /^Processing .*alpha-1\.0/m, `${workspaceId}: pip installed it`);
    }
  } finally {
    await other.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
