import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { serveNpmRegistry, type NpmPackageSpec, type NpmRegistry } from '../helpers/npmRegistry.js';
import { callTool, describeCall, runTool } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// The sandbox's boundary, attacked from node sessions: what the session's code controls (its
// code, config.env, workspace files such as .npmrc) and what a registry controls (packuments,
// tarball bytes, package.json fields) must reach nothing beyond the session: not root, not the
// installer uid that fetches for every session, not the shared npm cache, not the host.

const SECRET = 'worker-secret-do-not-leak';
let worker: RunningWorker;
let registry: NpmRegistry;
let evilRegistry: HttpServer;
let evilRequests: string[] = [];
let listener: Server;
let connections = 0;
let attacker: string;
let victim: string;

/** Every path a malicious tarball tries to write; none may exist after an install. */
const ESCAPES = ['/tmp/codegen-node-escape-dotdot', '/tmp/codegen-node-escape-absolute'];

const PACKAGES: NpmPackageSpec[] = [
  { name: 'plain', version: '1.0.0', files: { 'index.js': 'module.exports = "plain";\n' }, manifest: { main: 'index.js' } },
  {
    // A tarball a registry should never serve: paths climbing out, absolute paths, links out, a write through a link.
    name: 'evil-tar',
    version: '1.0.0',
    files: { 'index.js': 'module.exports = "evil-tar";\n' },
    manifest: { main: 'index.js' },
    rawEntries: [
      { name: 'package/../../../../../../../../tmp/codegen-node-escape-dotdot', data: 'escaped' },
      { name: '/tmp/codegen-node-escape-absolute', data: 'escaped' },
      { name: 'package/etc-link', type: 'symlink', link: '/etc' },
      { name: 'package/up-link', type: 'symlink', link: '../../../../../../..' },
      { name: 'package/up-link/tmp/codegen-node-escape-dotdot', data: 'through a link' },
      { name: 'package/passwd', type: 'hardlink', link: '/etc/passwd' },
      { name: 'package/cache-link', type: 'symlink', link: '/npm-cache' },
      { name: 'package/cache-link/poison', data: 'poisoned' },
    ],
  },
  {
    // package.json fields pointing out of the package: bins at host files and at the shared cache.
    name: 'evil-bin',
    version: '1.0.0',
    files: { 'index.js': 'module.exports = "evil-bin";\n' },
    manifest: {
      main: 'index.js',
      bin: { passwd: '../../../../../../etc/passwd', cache: '../../../npm-cache', self: 'index.js' },
      man: ['../../../../etc/shadow'],
    },
  },
];

before(async () => {
  listener = createServer((socket) => {
    connections++;
    socket.end('hello');
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  // A registry (and git server) nobody should ask: what a session's .npmrc or the host's npm settings name.
  evilRegistry = createHttpServer((req, res) => {
    evilRequests.push(req.url ?? '');
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => evilRegistry.listen(0, '127.0.0.1', r));
  const gitPort = (evilRegistry.address() as { port: number }).port;
  PACKAGES.push({
    // A dependency npm would fetch by running git: no process may start in the fetching step.
    name: 'git-dep',
    version: '1.0.0',
    files: { 'index.js': '' },
    manifest: { dependencies: { fromgit: `git+http://127.0.0.1:${gitPort}/fromgit.git` } },
  });
  registry = await serveNpmRegistry(PACKAGES);
  const evilUrl = `http://127.0.0.1:${gitPort}/`;
  worker = await startWorker({
    env: {
      WORKER_LANGUAGES: 'python,node',
      WORKER_NPM_REGISTRY: registry.url,
      CODEGEN_TEST_SECRET: SECRET,
      // The host's own npm settings must not steer pkg.install.
      npm_config_registry: evilUrl,
      NPM_CONFIG_IGNORE_SCRIPTS: 'false',
    },
  });
  attacker = (await worker.sessions.createSession({ workspaceId: 'node-attacker', config: { language: 'node' } })).sessionId;
  victim = (await worker.sessions.createSession({ workspaceId: 'node-victim', config: { language: 'node' } })).sessionId;
  await runTool(worker.tasks, victim, 'fs.write', { path: 'private.txt', contents: 'victim data' });
});

after(async () => {
  await stopHard(worker);
  await registry?.close();
  evilRegistry?.close();
  listener?.close();
});

/** Runs node code in the attacker's session; it prints BLOCKED when stopped, ESCAPED when not. */
async function attempt(code: string, sessionId = attacker): Promise<string> {
  const run = await callTool(worker.tasks, sessionId, 'run.node', { code });
  assert.equal(run.code, Status.OK, describeCall(run));
  const out = run.result?.outputs.stdout ?? '';
  assert.doesNotMatch(out, /ESCAPED/, `${out}\n${run.result?.outputs.stderr}`);
  assert.match(out, /BLOCKED/, `${out}\n${run.result?.outputs.stderr}`);
  return out;
}

const TRY = (what: string, body: string) =>
  `(async () => { try { ${body}; console.log("ESCAPED ${what}"); } catch (e) { console.log("BLOCKED ${what}", e.code ?? e.message); } })();`;

test('node code runs as an unprivileged uid with no capabilities; /etc/shadow and host paths are out of reach', async () => {
  const status = await runTool(worker.tasks, attacker, 'run.node', {
    code: 'console.log(process.getuid(), process.geteuid()); console.log(require("fs").readFileSync("/proc/self/status", "utf8"))',
  });
  const [uid = 0, euid = 0] = status.stdout!.split('\n')[0]!.split(' ').map(Number);
  assert.ok(uid > 0 && euid > 0, `uid ${uid} euid ${euid}`);
  assert.match(status.stdout!, /CapEff:\s+0000000000000000/);
  assert.match(status.stdout!, /NoNewPrivs:\s+1/);
  await attempt(TRY('shadow', 'require("fs").readFileSync("/etc/shadow")'));
  await attempt(TRY('data dir', `require("fs").readdirSync(${JSON.stringify(worker.dataDir)})`));
  const victimFile = join(worker.dataDir, 'sessions', victim, 'disk', 'workspace', 'private.txt');
  await attempt(TRY('other session', `require("fs").readFileSync(${JSON.stringify(victimFile)})`));
  for (const path of ['/usr/evil', '/env/evil', '/env/node_modules/evil', '/node_modules/evil'])
    await attempt(TRY(`write ${path}`, `require("fs").writeFileSync(${JSON.stringify(path)}, "x")`));
});

test('no network for node code unless the worker allows it', async () => {
  const port = (listener.address() as { port: number }).port;
  await attempt(`
const s = require("net").connect(${port}, "127.0.0.1");
s.on("connect", () => { console.log("ESCAPED tcp"); s.destroy(); });
s.on("error", (e) => console.log("BLOCKED tcp", e.code));`);
  assert.equal(connections, 0);
});

test("the worker's environment (its secrets, NODE_OPTIONS, npm settings) reaches no node code", async () => {
  await attempt(`
const fs = require("fs");
const found = Object.entries(process.env).filter(([k, v]) => v.includes(${JSON.stringify(SECRET)}) || /^(WORKER_|npm_config_|NPM_CONFIG_)/.test(k)).map(([k]) => k);
for (const pid of fs.readdirSync("/proc").filter((p) => /^\\d+$/.test(p))) {
  try { if (fs.readFileSync("/proc/" + pid + "/environ", "latin1").includes(${JSON.stringify(SECRET)})) found.push(pid); } catch {}
}
console.log(found.length ? "ESCAPED env" : "BLOCKED env", found, Object.keys(process.env).sort().join(","));`);
});

test("config.env NODE_OPTIONS runs the session's file only as the session: never as root or the installer, in pkg.install or run.node", async () => {
  const { sessionId } = await worker.sessions.createSession({
    workspaceId: 'node-options',
    config: { language: 'node', env: { NODE_OPTIONS: '--require /workspace/evil.js', NPM_CONFIG_IGNORE_SCRIPTS: 'false' } },
  });
  // Where it can, evil.js leaves its uid: in the workspace, the fetching step's directories and the shared cache.
  const evil = `const fs = require("fs"); for (const d of ["/workspace", "/fetched", "/npm-cache", "/env"]) { try { fs.appendFileSync(d + "/evil-ran", process.getuid() + "\\n"); } catch {} }`;
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'evil.js', contents: evil });
  const installed = await callTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'plain' }, 60_000);
  assert.equal(installed.code, Status.OK, describeCall(installed));
  const uid = (await runTool(worker.tasks, sessionId, 'run.node', { code: 'console.log(process.getuid())' })).stdout!.trim();
  await runTool(worker.tasks, sessionId, 'run.shell', { command: 'node -e 0' });
  const workspace = join(worker.dataDir, 'sessions', sessionId, 'disk', 'workspace');
  const uids = new Set(readFileSync(join(workspace, 'evil-ran'), 'utf8').split('\n').filter(Boolean));
  assert.deepEqual([...uids], [uid], 'evil.js ran, and only as the session');
  assert.deepEqual(markers(worker.dataDir, 'evil-ran'), [join(workspace, 'evil-ran')]);
  await worker.sessions.destroySession({ sessionId });
});

test("a workspace .npmrc and the host's npm settings do not steer pkg.install: the configured registry only, no scripts", async () => {
  await runTool(worker.tasks, attacker, 'fs.write', {
    path: '.npmrc',
    contents: `registry=http://127.0.0.1:${(evilRegistry.address() as { port: number }).port}/\nignore-scripts=false\n`,
  });
  evilRequests = [];
  const installed = await callTool(worker.tasks, attacker, 'pkg.install', { requirements: 'plain@1.0.0' }, 60_000);
  assert.equal(installed.code, Status.OK, describeCall(installed));
  assert.equal(installed.result?.outputs.installed, 'plain@1.0.0');
  assert.deepEqual(evilRequests, []);
});

test('a dependency fetched with git starts no process in the fetching step', async () => {
  evilRequests = [];
  const refused = await callTool(worker.tasks, attacker, 'pkg.install', { requirements: 'git-dep@1.0.0' }, 60_000);
  assert.equal(refused.code, Status.INTERNAL, describeCall(refused));
  assert.deepEqual(evilRequests, [], 'git never ran (it would have asked this server for the repository)');
  assert.match(refused.text, /EPERM|spawn/);
});

test("a malicious tarball writes nothing outside the session's environment: no climbing paths, links out or writes through them", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'node-tar', config: { language: 'node' } });
  const run = await callTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'evil-tar@1.0.0\nevil-bin@1.0.0' }, 60_000);
  for (const path of ESCAPES) assert.equal(existsSync(path), false, `${path} was written (${describeCall(run)})`);
  const cache = join(worker.dataDir, 'caches', 'npm-cache');
  assert.deepEqual(markers(cache, 'poison'), [], 'the shared cache was not written through a link');
  const env = join(worker.dataDir, 'sessions', sessionId, 'disk', 'env');
  assert.deepEqual(linksOut(env), [], 'no link in the environment leads out of it');
  assert.deepEqual(hardLinked(env), [], 'no file in the environment is a host file');
  assert.notEqual(statSync('/etc/passwd').mode & 0o111, 0o111, 'no bin target outside the package was made executable');
  if (run.code === Status.OK) {
    const used = await runTool(worker.tasks, sessionId, 'run.node', { code: 'console.log(require("evil-tar"), require("evil-bin"))' });
    assert.equal(used.stdout, 'evil-tar evil-bin\n');
  }
  await worker.sessions.destroySession({ sessionId });
});

/** Files named `name` anywhere below `dir`. */
function markers(dir: string, name: string): string[] {
  return execFileSync('find', [dir, '-name', name], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Symlinks below `root` whose target, resolved from where they are, leaves `root`. */
function linksOut(root: string): string[] {
  const links = execFileSync('find', [root, '-type', 'l'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return links.filter((link) => {
    const target = resolve(dirname(link), readlinkSync(link));
    return target !== root && !target.startsWith(`${root}/`);
  });
}

/** Regular files below `root` with more than one name (a hard link to something else). */
function hardLinked(root: string): string[] {
  const files = execFileSync('find', [root, '-type', 'f'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return files.filter((f) => lstatSync(f).nlink > 1);
}
