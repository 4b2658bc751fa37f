import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
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

test('a list another session installed is installed again from the wheel store, as pip would have', async () => {
  const first = (await worker.sessions.createSession({ workspaceId: 'store' })).sessionId;
  const second = (await worker.sessions.createSession({ workspaceId: 'store' })).sessionId;
  const slow = await install(first, 'alpha');
  assert.equal(slow.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(slow.result));
  const pipMade = await python(first, INSPECT);
  const asked = index.requests.length;

  const fast = await install(second, 'alpha');
  assert.equal(fast.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(fast.result));
  // The worker read the two project pages (unchanged since the first install); pip did not run.
  assert.deepEqual(index.requests.slice(asked).sort(), ['/simple/alpha/', '/simple/beta/']);
  assert.doesNotMatch(fast.result!.outputs.stdout!, /Collecting/);
  assert.equal(fast.result?.outputs.installed, slow.result?.outputs.installed);
  assert.match(fast.result!.outputs.stdout!, /^Successfully installed alpha-1\.0 beta-2\.0$/m);
  assert.equal(await python(second, INSPECT), pipMade);

  // Installed already: pip decides (and says so), the store stays out of it.
  const again = await install(second, 'alpha');
  assert.equal(again.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(again.result));
  assert.ok(index.requests.length > asked, 'pip asked the index');
});
