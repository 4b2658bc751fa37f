import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { serveNpmRegistry, type NpmPackageSpec, type NpmRegistry } from './helpers/npmRegistry.js';
import { callTool, describeCall, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// Node sessions over real gRPC: packages from a registry the test serves on loopback, run.node
// code that requires and imports them, and a checkpoint restored by another worker process
// with the registry gone.

let registry: NpmRegistry;
let worker: RunningWorker | undefined;
let dataDir: string;

const MARKER = 'codegen-install-script-ran';
/** What each install script would do: leave a marker wherever it can write. */
const SCRIPT = `node -e "for (const d of [process.cwd(), process.env.INIT_CWD, process.env.HOME, '/tmp', '/npm-cache', '/fetched', '/env', '/workspace']) { try { require('fs').writeFileSync(d + '/${MARKER}-' + process.getuid(), 'ran') } catch {} }"`;

const PACKAGES: NpmPackageSpec[] = [
  {
    name: 'left-pad',
    version: '1.3.0',
    files: { 'index.js': 'module.exports = (s, n, c = " ") => String(s).padStart(n, c);\n' },
    manifest: { main: 'index.js' },
  },
  {
    name: 'greeter',
    version: '2.0.0',
    files: {
      'index.js': 'const pad = require("left-pad");\nexports.greet = (name) => "hi" + pad(name, 6);\n',
      'cli.js': '#!/usr/bin/env node\nconsole.log(require("./index.js").greet(process.argv[2] ?? "cli"));\n',
    },
    manifest: { main: 'index.js', dependencies: { 'left-pad': '^1.0.0' }, bin: { greet: 'cli.js' } },
  },
  {
    name: 'scripted',
    version: '1.0.0',
    files: { 'index.js': 'module.exports = "scripted";\n' },
    manifest: { main: 'index.js', scripts: { preinstall: SCRIPT, install: SCRIPT, postinstall: SCRIPT } },
  },
];

before(async () => {
  registry = await serveNpmRegistry(PACKAGES);
  dataDir = await mkdtemp(join(tmpdir(), 'codegen-node-test-'));
  worker = await startWorker({ dataDir, env: { WORKER_LANGUAGES: 'python,node', WORKER_NPM_REGISTRY: registry.url } });
});

after(async () => {
  await worker?.stop();
  await registry?.close();
  await rm(dataDir, { recursive: true, force: true });
});

const node = (w: RunningWorker, sessionId: string, code: string) => runTool(w.tasks, sessionId, 'run.node', { code });

/** Files named like the install scripts' marker anywhere under `dir`. */
function markersUnder(dir: string): string[] {
  return execFileSync('find', [dir, '-name', `${MARKER}*`], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}

test('install scripts never run in pkg.install; the session can run them itself, as its own uid', async () => {
  const w = worker!;
  const { sessionId } = await w.sessions.createSession({ workspaceId: 'node-scripts', config: { language: 'node' } });
  const installed = await runTool(w.tasks, sessionId, 'pkg.install', { requirements: 'scripted@1.0.0' });
  assert.equal(installed.installed, 'scripted@1.0.0');
  assert.equal((await node(w, sessionId, 'console.log(require("scripted"))')).stdout, 'scripted\n');
  assert.deepEqual(markersUnder(w.dataDir), [], 'no install script ran');

  // The marker is real: the session's own npm runs the scripts in a copy of its packages, as the session's uid.
  const rebuilt = await callTool(
    w.tasks,
    sessionId,
    'run.shell',
    { command: 'cp -R /env/node_modules . && npm rebuild scripted --no-audit --no-fund >/dev/null && ls' },
    60_000,
  );
  assert.equal(rebuilt.code, Status.OK, describeCall(rebuilt));
  const uid = (await node(w, sessionId, 'console.log(process.getuid())')).stdout!.trim();
  assert.match(rebuilt.result?.outputs.stdout ?? '', new RegExp(`${MARKER}-${uid}`), rebuilt.text);
  await w.sessions.destroySession({ sessionId });
});

test('pkg.install takes registry specs only: options, paths, URLs, git, aliases and tarballs are INVALID_ARGUMENT', async () => {
  const w = worker!;
  const { sessionId } = await w.sessions.createSession({ workspaceId: 'node-specs', config: { language: 'node' } });
  for (const spec of [
    '--registry=http://evil',
    '-g left-pad',
    './local',
    '/abs/path',
    'file:../x',
    'git+https://example.com/x.git',
    'user/repo',
    'github:user/repo',
    'x@npm:left-pad@1',
    'http://example.com/x.tgz',
    'x.tgz',
  ]) {
    const refused = await callTool(w.tasks, sessionId, 'pkg.install', { requirements: spec });
    assert.equal(refused.code, Status.INVALID_ARGUMENT, `${spec}: ${describeCall(refused)}`);
  }
  const missing = await callTool(w.tasks, sessionId, 'pkg.install', { requirements: 'no-such-package@1.0.0' }, 60_000);
  assert.equal(missing.code, Status.INTERNAL, describeCall(missing));
  assert.match(missing.details, /package install failed: npm error/);
  await w.sessions.destroySession({ sessionId });
});

test("unisolated (WORKER_SANDBOX=none), require and import still find the environment's packages", async () => {
  const plain = await startWorker({ env: { WORKER_LANGUAGES: 'node', WORKER_SANDBOX: 'none', WORKER_SPARE_SESSIONS: '0', WORKER_NPM_REGISTRY: registry.url } });
  try {
    const { sessionId } = await plain.sessions.createSession({ workspaceId: 'node-plain', config: { language: 'node' } });
    assert.equal((await runTool(plain.tasks, sessionId, 'pkg.install', { requirements: 'left-pad@1.3.0' })).installed, 'left-pad@1.3.0');
    const code =
      'import pad from "left-pad";\nimport { createRequire } from "node:module";\nconsole.log(pad("x", 3), createRequire(process.cwd() + "/")("left-pad")("y", 2));';
    assert.equal((await node(plain, sessionId, code)).stdout, '  x  y\n');
    assert.equal((await node(plain, sessionId, 'console.log(require("left-pad")("z", 2))')).stdout, ' z\n');
  } finally {
    await plain.stop();
  }
});

// Last: it stops the registry and the first worker.
test('workflow: write files, install from the registry, require and import, checkpoint, restore on another worker with the registry gone', async () => {
  const w = worker!;
  const { sessionId } = await w.sessions.createSession({ workspaceId: 'node-flow', config: { language: 'node' } });
  await runTool(w.tasks, sessionId, 'fs.write', {
    path: 'lib/shout.mjs',
    contents: 'import pad from "left-pad";\nexport const shout = (s) => pad(s.toUpperCase(), 5, "*");\n',
  });
  await runTool(w.tasks, sessionId, 'fs.write', {
    path: 'lib/whisper.js',
    contents: 'exports.whisper = (s) => require("left-pad")(s.toLowerCase(), 5, ".");\n',
  });

  const installed = await runTool(w.tasks, sessionId, 'pkg.install', { requirements: '# packages\nleft-pad@1.3.0\n\ngreeter  # depends on left-pad\n' });
  assert.equal(installed.installed, 'left-pad@1.3.0,greeter@2.0.0');
  assert.ok(
    registry.requests.some((r) => r.endsWith('.tgz')),
    'tarballs came from the registry',
  );

  const commonJs = 'console.log(require("left-pad")("a", 3), require("greeter").greet("b"), require("./lib/whisper.js").whisper("C"))';
  const esm =
    'import pad from "left-pad";\nimport { greet } from "greeter";\nimport { shout } from "./lib/shout.mjs";\nconsole.log(pad("a", 3), greet("b"), shout("c"), typeof require);';
  const expected = { commonJs: '  a hi     b ....c\n', esm: '  a hi     b ****C undefined\n' };
  assert.equal((await node(w, sessionId, commonJs)).stdout, expected.commonJs);
  assert.equal((await node(w, sessionId, esm)).stdout, expected.esm, 'import syntax runs as an ES module');
  const bin = await runTool(w.tasks, sessionId, 'run.shell', { command: 'greet shell' });
  assert.equal(bin.stdout, 'hi shell\n', "the environment's bin links are on run.shell's PATH");

  const checkpoint = await w.sessions.checkpointSession({ sessionId });
  assert.deepEqual(checkpoint.metadata?.installedPackages, ['greeter@2.0.0', 'left-pad@1.3.0']);

  // Another worker process on the same store, without the registry or the npm cache.
  await w.stop();
  worker = undefined;
  await registry.close();
  // The caches' disk (unmounted by the worker's stop) and what it holds: the next worker starts with empty caches.
  for (const name of ['caches.img', 'caches']) await rm(join(dataDir, name), { recursive: true, force: true });
  worker = await startWorker({ dataDir, env: { WORKER_LANGUAGES: 'python,node', WORKER_NPM_REGISTRY: registry.url } });
  const restored = await worker.sessions.restoreSession({ checkpointId: checkpoint.checkpointId });
  assert.equal((await node(worker, restored.sessionId, commonJs)).stdout, expected.commonJs);
  assert.equal((await node(worker, restored.sessionId, esm)).stdout, expected.esm);
});
