import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import fc from 'fast-check';
import { bytesOf } from '../src/storage/byteNames.js';
import { scanTree } from '../src/storage/fileTree.js';
import { makeDataDisk, type DataDisk } from './helpers/dataDisk.js';
import { make, tree, type Node } from './helpers/generatedTrees.js';
import { assertSameTree } from './helpers/sameTree.js';
import { serveGoProxy, type GoProxy } from './helpers/goProxy.js';
import { serveNpmRegistry, type NpmRegistry } from './helpers/npmRegistry.js';
import { servePackageIndex, type PackageIndex } from './helpers/packageIndex.js';
import { callTool, describeCall, runTool, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// ForkSession over real gRPC, on a data directory whose files can be cloned (XFS with
// reflinks, made here on a loop device): the forks hold the source's files and packages at one
// instant, each with its own uid, cgroup and network; what either writes after is its own.

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

let disk: DataDisk;
let worker: RunningWorker;
let index: PackageIndex;
let registry: NpmRegistry;
let proxy: GoProxy;

const env = () => ({
  WORKER_LANGUAGES: 'python,node,go',
  WORKER_PIP_INDEX_URL: index.url,
  WORKER_NPM_REGISTRY: registry.url,
  WORKER_GOPROXY: proxy.url,
  WORKER_MAX_SESSIONS: '14',
  WORKER_SPARE_SESSIONS: '1',
});

before(async () => {
  disk = makeDataDisk('codegen-fork-', '8G', 'xfs');
  [index, registry, proxy] = await Promise.all([
    servePackageIndex([{ name: 'forkpkg', version: '1.0', files: { 'forkpkg.py': 'WORD = "from the index"\n' } }]),
    serveNpmRegistry([{ name: 'forkjs', version: '1.0.0', files: { 'index.js': 'module.exports = "from the registry";\n' } }]),
    serveGoProxy([{ path: 'example.com/forkgo', version: 'v1.0.0', files: { 'forkgo.go': 'package forkgo\n\nconst Word = "from the proxy"\n' } }]),
  ]);
  worker = await startWorker({ dataDir: disk.dataDir, env: env() });
});

after(async () => {
  await worker?.stop();
  await Promise.all([index?.close(), registry?.close(), proxy?.close()]);
  disk?.remove();
});

const sh = async (sessionId: string, command: string): Promise<string> => (await runTool(worker.tasks, sessionId, 'run.shell', { command })).stdout ?? '';

async function fork(sessionId: string, count = 1, workspaceId = ''): Promise<string[]> {
  const reply = await worker.sessions.forkSession({ sessionId, count, workspaceId });
  assert.equal(reply.copyMethod, 'reflink');
  assert.equal(reply.sessionIds.length, count);
  return reply.sessionIds;
}

test("a fork holds the source's files, packages and settings as they were, with its own uid, cgroup and network; what either writes after is its own", async () => {
  const { sessionId: source } = await worker.sessions.createSession({
    workspaceId: 'ws-fork',
    userId: 'user-1',
    config: { language: 'python', env: { FORK_MARK: 'kept' }, limits: { maxMemoryMb: 300, maxCpuPercent: 0, maxDiskMb: 0, timeoutSeconds: 0 } },
  });
  await runTool(worker.tasks, source, 'pkg.install', { requirements: 'forkpkg==1.0' });
  await sh(source, 'mkdir -p d/e && printf one > d/e/f && head -c 3000000 /dev/urandom > big.bin && ln -s d/e/f link && chmod 640 d/e/f');
  const sums = await sh(source, 'sha256sum big.bin d/e/f; stat -c "%a %N" d/e/f link');

  const [copy] = await fork(source, 1, 'ws-other');
  const status = await worker.sessions.getSessionStatus({ sessionId: copy! });
  assert.equal(status.workspaceId, 'ws-other');
  assert.equal(status.userId, 'user-1');
  assert.equal(status.language, 'python');
  assert.equal(status.state, (await worker.sessions.getSessionStatus({ sessionId: source })).state);
  assert.equal(await sh(copy!, 'sha256sum big.bin d/e/f; stat -c "%a %N" d/e/f link'), sums);
  assert.equal(
    (await runTool(worker.tasks, copy!, 'run.python', { code: 'import forkpkg, os; print(forkpkg.WORD, os.environ["FORK_MARK"])' })).stdout,
    'from the index kept\n',
  );

  // Its own uid (owning every file), cgroup and network namespace.
  const who = (id: string) => sh(id, 'id -u; readlink /proc/self/ns/net; find . ! -user "$(id -u)" | wc -l');
  const [a, b] = (await Promise.all([who(source), who(copy!)])).map((out) => out.trim().split('\n'));
  for (const i of [0, 1]) assert.notEqual(a![i], b![i], `line ${i}: ${a![i]} / ${b![i]}`);
  assert.equal(b![2], '0', "every file is the fork's");
  for (const id of [source, copy!]) {
    // Another test's worker removing its groups meanwhile makes find exit 1: what it printed still holds every match.
    const groups = spawnSync('find', ['/sys/fs/cgroup/memory', '-maxdepth', '5', '-type', 'd', '-name', id], { encoding: 'utf8' }).stdout;
    assert.equal(groups.trim().split('\n').length, 1, `a memory cgroup of ${id}'s own`);
  }

  // Independent both ways, and the memory limit came along.
  await sh(source, 'printf source-after > d/e/f; rm big.bin');
  await sh(copy!, 'printf fork-after > new.txt');
  assert.equal(await sh(copy!, 'cat d/e/f; ls big.bin'), 'onebig.bin\n');
  assert.equal(await sh(source, 'cat d/e/f; ls new.txt 2>&1 | grep -c "No such"'), 'source-after1\n');
  const hog = await callTool(worker.tasks, copy!, 'run.python', { code: 'x = bytearray(600 * 1024 * 1024)' });
  assert.equal(hog.result?.outputs.killed_by, 'memory', describeCall(hog));
  for (const id of [source, copy!]) await worker.sessions.destroySession({ sessionId: id });
});

test('forks of node and go sessions hold their installed packages, and build and run with them', async () => {
  const node = (await worker.sessions.createSession({ workspaceId: 'ws-node', config: { language: 'node' } })).sessionId;
  await runTool(worker.tasks, node, 'pkg.install', { requirements: 'forkjs@1.0.0' });
  const go = (await worker.sessions.createSession({ workspaceId: 'ws-go', config: { language: 'go' } })).sessionId;
  await runTool(worker.tasks, go, 'pkg.install', { requirements: 'example.com/forkgo@v1.0.0' });
  const [nodeFork] = await fork(node);
  const [goFork] = await fork(go);
  assert.equal((await runTool(worker.tasks, nodeFork!, 'run.node', { code: 'console.log(require("forkjs"))' })).stdout, 'from the registry\n');
  const code = 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/forkgo"\n)\n\nfunc main() { fmt.Println(forkgo.Word) }\n';
  assert.equal((await runTool(worker.tasks, goFork!, 'run.go', { code })).stdout, 'from the proxy\n');
  for (const id of [node, go, nodeFork!, goFork!]) await worker.sessions.destroySession({ sessionId: id });
});

test("a running task is not copied: the source's runs on, and none of its processes (nor its ports) reach the fork", async () => {
  const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-running' });
  const running = callTool(
    worker.tasks,
    source,
    'run.shell',
    { command: 'i=0; while [ $i -lt 40 ]; do echo $i >> counter; i=$((i+1)); sleep 0.05; done; echo done' },
    60_000,
  );
  await runTool(worker.tasks, source, 'run.shell', { command: 'python3 -m http.server 8765 >/dev/null 2>&1 &', background: 'true' }).catch(() => undefined);
  const [copy] = await fork(source);
  const copied = await sh(
    copy!,
    'ps -e -o args= | grep -c -E "[s]leep|[h]ttp.server" || true; python3 -c "import socket; s=socket.socket(); s.settimeout(1); print(s.connect_ex((\'127.0.0.1\', 8765)))"',
  );
  assert.match(copied, /^0\n[1-9]\d*\n$/, 'no process of the source, and its port refuses');
  const ended = await running;
  assert.equal(ended.result?.status, TaskStatus.STATUS_SUCCESS, describeCall(ended));
  assert.match(ended.result?.outputs.stdout ?? '', /done\n$/);
  assert.equal(await sh(source, 'wc -l < counter'), '40\n');
  const lines = Number(await sh(copy!, 'wc -l < counter || echo 0'));
  assert.ok(lines < 40, `the fork's counter stopped where the fork found it (${lines})`);
  for (const id of [source, copy!]) await worker.sessions.destroySession({ sessionId: id });
});

test('eight forks at once, forks of forks, the capacity counted; a bad count, an unknown session and one past capacity are refused', async () => {
  const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-many' });
  await sh(source, 'echo gen0 > gen');
  const eight = await fork(source, 8);
  assert.equal(new Set(eight).size, 8);
  await Promise.all(eight.map((id, i) => sh(id, `echo fork${i} >> gen`)));
  const [grandchild] = await fork(eight[3]!);
  assert.equal(await sh(grandchild!, 'cat gen'), 'gen0\nfork3\n');
  assert.equal(await sh(source, 'cat gen'), 'gen0\n');
  const capacity = await worker.sessions.getCapacity({});
  assert.equal(capacity.activeSessions, 10);

  const refused = async (request: { sessionId: string; count: number; workspaceId: string }) =>
    worker.sessions.forkSession(request).then(
      () => Status.OK,
      (err: { code: Status; details: string }) => err.code,
    );
  assert.equal(await refused({ sessionId: source, count: 5, workspaceId: '' }), Status.RESOURCE_EXHAUSTED);
  assert.equal(await refused({ sessionId: source, count: -1, workspaceId: '' }), Status.INVALID_ARGUMENT);
  assert.equal(await refused({ sessionId: source, count: 17, workspaceId: '' }), Status.INVALID_ARGUMENT);
  assert.equal(await refused({ sessionId: 'session-nope', count: 1, workspaceId: '' }), Status.NOT_FOUND);
  assert.equal((await worker.sessions.getCapacity({})).activeSessions, 10, 'a refused fork holds no slot');

  // The source destroyed, its forks live on.
  await worker.sessions.destroySession({ sessionId: source });
  assert.equal(await sh(eight[0]!, 'cat gen'), 'gen0\nfork0\n');
  for (const id of [...eight, grandchild!]) await worker.sessions.destroySession({ sessionId: id });
});

test("a fork of a full disk is full too: its writes fail alone, and each side's freed space is its own", async () => {
  const { sessionId: source } = await worker.sessions.createSession({
    workspaceId: 'ws-full',
    config: { limits: { maxDiskMb: 24, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 } },
  });
  const fill = await callTool(worker.tasks, source, 'run.shell', { command: 'head -c 40000000 /dev/zero > fill' });
  assert.equal(fill.result?.outputs.killed_by, 'disk', describeCall(fill));
  const [copy] = await fork(source);
  const write = await callTool(worker.tasks, copy!, 'run.shell', { command: 'echo more >> fill-2' });
  assert.equal(write.result?.outputs.killed_by, 'disk', describeCall(write));
  await sh(copy!, 'rm fill');
  assert.equal(await sh(copy!, 'head -c 1000000 /dev/zero > room && echo ok'), 'ok\n');
  const still = await callTool(worker.tasks, source, 'run.shell', { command: 'echo more >> fill-2' });
  assert.equal(still.result?.outputs.killed_by, 'disk', "the source's disk is still full");
  for (const id of [source, copy!]) await worker.sessions.destroySession({ sessionId: id });
});

test('an fs.write under way when the fork is taken leaves nothing half-made in the fork: no temporary, the file whole or absent', async () => {
  const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-write-race' });
  const sourceDisk = join(worker.dataDir, 'sessions', source, 'disk');
  const tempIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).some((name) => name.startsWith('.fs-write-')) : false);
  const contents = Buffer.alloc(32 * 1024 * 1024, 0x61);
  const base64 = contents.toString('base64');
  // The fork is asked for once the write's temporary file exists (wherever the worker keeps it).
  // A write can come and go between two looks on a busy host (make test saw it once): again then.
  let writing: ReturnType<typeof callTool> | undefined;
  for (let attempt = 0; attempt < 10 && !writing; attempt++) {
    let done = false;
    const started = callTool(worker.tasks, source, 'fs.write', { path: 'big.bin', contents: base64, encoding: 'base64' });
    void started.finally(() => (done = true));
    while (!done && !tempIn(join(sourceDisk, 'workspace')) && !tempIn(join(sourceDisk, '.scratch'))) await new Promise((resolve) => setImmediate(resolve));
    if (done) assert.equal((await started).code, Status.OK);
    else writing = started;
  }
  assert.ok(writing, 'no write was seen under way in 10 attempts');
  const [copy] = await fork(source);
  assert.equal((await writing).code, Status.OK);
  const copyDisk = join(worker.dataDir, 'sessions', copy!, 'disk');
  assert.deepEqual(
    readdirSync(join(copyDisk, 'workspace')).filter((name) => name.startsWith('.fs-write-')),
    [],
    "the fork's workspace holds no temporary",
  );
  assert.deepEqual(readdirSync(join(copyDisk, '.scratch')), [], "the fork's scratch directory is empty");
  const size = await sh(copy!, 'if [ -e big.bin ]; then stat -c %s big.bin; else echo absent; fi');
  assert.ok(size === 'absent\n' || size === `${contents.length}\n`, `big.bin in the fork: ${size}`);
  if (size !== 'absent\n') assert.equal(await sh(copy!, 'tr -d a < big.bin | wc -c'), '0\n');
  assert.equal(await sh(source, 'stat -c %s big.bin'), `${contents.length}\n`);
  for (const id of [source, copy!]) await worker.sessions.destroySession({ sessionId: id });
});

test('generated workspaces round-trip through a fork byte for byte, and what either side writes after is its own (15 trees)', async () => {
  const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-generated' });
  const workspaceOf = (id: string) => join(worker.dataDir, 'sessions', id, 'disk', 'workspace');
  const seed = Number(process.env.ROUNDTRIP_SEED ?? Date.now() % 2 ** 31);
  console.log(`# fork round trip: seed ${seed} (ROUNDTRIP_SEED=${seed} repeats it)`);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(tree.dir, async (top) => {
      // Made as the session's code would make it, on its disk: names of any bytes, links anywhere, modes and times.
      const made = Buffer.from(`${workspaceOf(source)}/gen-${run++}`);
      make(made, { ...(top as Node & { kind: 'dir' }), mode: 0o755 });
      const before = await scanTree(workspaceOf(source), 'workspace/');
      const [copy] = await fork(source);
      try {
        const copied = await scanTree(workspaceOf(copy!), 'workspace/');
        assertSameTree(copied, before, 'the fork');
        for (const [rel, entry] of before) {
          if (entry.type !== 'file') continue;
          const bytes = (id: string) => readFileSync(Buffer.concat([Buffer.from(`${workspaceOf(id)}/`), bytesOf(rel.slice('workspace/'.length))]));
          assert.ok(bytes(copy!).equals(bytes(source)), `the bytes of ${JSON.stringify(rel)}`);
        }
        // Each side's writes after the fork are its own.
        writeFileSync(`${workspaceOf(copy!)}/only-in-the-fork`, 'f');
        rmSync(made, { recursive: true, force: true });
        assert.equal(existsSync(`${workspaceOf(source)}/only-in-the-fork`), false);
        assertSameTree(await scanTree(workspaceOf(copy!), 'workspace/', ['only-in-the-fork']), before, 'the fork after the source changed');
      } finally {
        await worker.sessions.destroySession({ sessionId: copy! });
      }
    }),
    { numRuns: 15, seed },
  );
  await worker.sessions.destroySession({ sessionId: source });
});

test("a fork checkpoints on its source's last checkpoint; forks and a session adopted after a restart fork and run on", async () => {
  const { sessionId: source } = await worker.sessions.createSession({ workspaceId: 'ws-lineage' });
  await sh(source, 'echo base > base.txt');
  const full = await worker.sessions.checkpointSession({ sessionId: source, incremental: false });
  const [copy] = await fork(source);
  await sh(copy!, 'echo mine > mine.txt');
  const incremental = await worker.sessions.checkpointSession({ sessionId: copy!, incremental: true });
  assert.deepEqual(incremental.metadata?.modifiedFiles, ['mine.txt']);
  const restored = await worker.sessions.restoreSession({ checkpointId: incremental.checkpointId });
  assert.equal(await sh(restored.sessionId, 'cat base.txt mine.txt'), 'base\nmine\n');
  assert.ok(full.checkpointId);

  // A restart: every session adopted, and forking goes on from them.
  await worker.stop();
  worker = await startWorker({ dataDir: disk.dataDir, env: env() });
  assert.equal(await sh(copy!, 'cat mine.txt'), 'mine\n');
  const [again] = await fork(copy!);
  assert.equal(
    await sh(again!, 'cat base.txt mine.txt; echo "$(id -u) $(stat -c %u mine.txt)"').then((o) => o.split('\n').slice(0, 2).join('\n')),
    'base\nmine',
  );
  for (const id of [source, copy!, restored.sessionId, again!]) await worker.sessions.destroySession({ sessionId: id });
});

test('on a data directory that cannot clone files, a fork is a full copy, said in the reply and the start-up log', async () => {
  const plain = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
  try {
    const { sessionId } = await plain.sessions.createSession({ workspaceId: 'ws-plain' });
    await runTool(plain.tasks, sessionId, 'fs.write', { path: 'kept.txt', contents: 'kept' });
    const reply = await plain.sessions.forkSession({ sessionId, count: 2, workspaceId: '' });
    assert.equal(reply.copyMethod, 'copy');
    for (const id of reply.sessionIds) assert.equal((await runTool(plain.tasks, id, 'fs.read', { path: 'kept.txt' })).contents, 'kept');
    assert.ok(plain.logs.some((l) => typeof l.session_forks === 'string' && l.session_forks.startsWith('full copies')));
    // The CLI's fork prints the ids, one per line.
    const cli = spawnSync(process.execPath, [CLI, '--address', plain.address, 'fork', sessionId, '--count', '2'], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    const ids = cli.stdout.trim().split('\n');
    assert.equal(ids.length, 2);
    for (const id of ids) assert.equal((await plain.sessions.getSessionStatus({ sessionId: id })).workspaceId, 'ws-plain');
  } finally {
    await plain.stop();
  }
});

test('the disk helper killed between forks is started again: the next fork works', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'ws-helper' });
  await sh(sessionId, 'echo before > f');
  const first = await fork(sessionId);
  const helpers = readdirSync('/proc')
    .filter((pid) => /^\d+$/.test(pid))
    .filter((pid) => {
      try {
        // This worker's (other test files' workers run theirs meanwhile).
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return parent === worker.process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes("The worker's disk helper");
      } catch {
        return false;
      }
    });
  assert.ok(helpers.length >= 1, 'the helper runs');
  for (const pid of helpers) process.kill(Number(pid), 'SIGKILL');
  // Gone once the worker reaped it, which is when it hears of it: a fork asked before then is asked of the dead one.
  await waitFor(() => helpers.every((pid) => !existsSync(`/proc/${pid}`)));
  const [again] = await fork(sessionId);
  assert.equal(await sh(again!, 'cat f'), 'before\n');
  for (const id of [sessionId, ...first, again!]) await worker.sessions.destroySession({ sessionId: id });
});
