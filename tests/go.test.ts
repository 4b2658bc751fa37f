import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { serveGoProxy, type GoProxy } from './helpers/goProxy.js';
import { callTool, describeCall, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// Go sessions over real gRPC, with a module proxy served on loopback: modules installed,
// code importing them built and run, a compile error, go test in the workspace, and a
// checkpoint restored (and run) with the proxy gone.

let worker: RunningWorker;
let proxy: GoProxy;

before(async () => {
  proxy = await serveGoProxy([
    { path: 'example.com/dep', version: 'v1.0.0', files: { 'dep.go': 'package dep\n\nconst Word = "world"\n' } },
    { path: 'example.com/dep', version: 'v1.1.0', files: { 'dep.go': 'package dep\n\nconst Word = "planet"\n' } },
    {
      path: 'example.com/greet',
      version: 'v1.2.0',
      requires: ['example.com/dep v1.0.0'],
      files: {
        'greet.go': 'package greet\n\nimport "example.com/dep"\n\nfunc Hello(name string) string { return "hello " + name + " from the " + dep.Word }\n',
      },
    },
  ]);
  worker = await startWorker({ env: { WORKER_LANGUAGES: 'go,python', WORKER_GOPROXY: proxy.url, WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => {
  await worker?.stop();
  await proxy?.close();
});

const GREET = `package main

import (
	"fmt"
	"os"

	"example.com/greet"
)

func main() {
	name, err := os.ReadFile("name.txt")
	if err != nil {
		panic(err)
	}
	fmt.Println(greet.Hello(string(name)))
}
`;

/** A workspace module that uses the installed module, and its test. */
const WORKSPACE_MODULE = {
  'app/go.mod': 'module app\n\ngo 1.19\n',
  'app/app.go': 'package app\n\nimport "example.com/greet"\n\nfunc Message() string { return greet.Hello("test") }\n',
  'app/app_test.go':
    'package app\n\nimport "testing"\n\nfunc TestMessage(t *testing.T) {\n\tif got := Message(); got != "hello test from the world" {\n\t\tt.Fatalf("got %q", got)\n\t}\n}\n',
};

function archiveNames(storageUrl: string): string[] {
  const list = 'import sys, zipfile\nprint("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))';
  return execFileSync('python3', ['-c', list, fileURLToPath(storageUrl)])
    .toString()
    .trim()
    .split('\n');
}

test('a go session: modules installed from the proxy, code importing them run (its program cached), a compile error, checkpoint, restore and run without the proxy', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'ws-go', config: { language: 'go' } });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'name.txt', contents: 'gopher' });

  const installed = await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: '# the greeting\nexample.com/greet@latest\n\n' });
  assert.equal(installed.installed, 'example.com/greet@v1.2.0');
  assert.ok(proxy.requests.includes('/example.com/greet/@v/v1.2.0.zip'), proxy.requests.join(' '));

  const first = await runTool(worker.tasks, sessionId, 'run.go', { code: GREET });
  assert.equal(first.stdout, 'hello gopher from the world\n');
  const again = await runTool(worker.tasks, sessionId, 'run.go', { code: GREET });
  assert.equal(again.stdout, 'hello gopher from the world\n');
  // The second run used the first's program: one program in the cache for the same code.
  const cached = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'ls /env/gocache/codegen-run' });
  assert.equal(cached.stdout!.trim().split('\n').length, 1, cached.stdout);

  const broken = await callTool(worker.tasks, sessionId, 'run.go', { code: 'package main\n\nfunc main() {\n\tnope()\n}\n' });
  assert.equal(broken.code, Status.OK, describeCall(broken));
  assert.equal(broken.result?.status, TaskStatus.STATUS_FAILURE);
  assert.equal(broken.result?.outputs.exit_code, '2');
  assert.match(broken.result?.outputs.stderr ?? '', /main\.go:4:2: undefined: nope/);

  // An upgrade of a dependency, asked for by a version prefix, pinned to what the proxy has.
  const upgraded = await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/dep@v1' });
  assert.equal(upgraded.installed, 'example.com/dep@v1.1.0');
  assert.equal((await runTool(worker.tasks, sessionId, 'run.go', { code: GREET })).stdout, 'hello gopher from the planet\n');

  // A directory the session made read-only, with a file in it, survives the checkpoint.
  await runTool(worker.tasks, sessionId, 'run.shell', { command: 'mkdir -p locked/in && echo kept > locked/in/f && chmod 555 locked/in locked' });
  const checkpoint = await worker.sessions.checkpointSession({ sessionId });
  assert.deepEqual(checkpoint.metadata?.installedPackages, ['example.com/dep@v1.1.0', 'example.com/greet@v1.2.0']);
  const names = archiveNames(checkpoint.storageUrl);
  assert.ok(names.includes('env/gopath/pkg/mod/example.com/greet@v1.2.0/greet.go'), 'the module cache is carried');
  assert.ok(names.includes('workspace/go.sum'), "the module is the workspace's");
  assert.deepEqual(
    names.filter((n) => n.startsWith('env/gocache')),
    [],
    'the build cache is not',
  );

  await proxy.stop();
  const restored = await worker.sessions.restoreSession({ checkpointId: checkpoint.checkpointId });
  assert.equal((await runTool(worker.tasks, restored.sessionId, 'run.go', { code: GREET })).stdout, 'hello gopher from the planet\n');
  assert.equal((await runTool(worker.tasks, restored.sessionId, 'run.shell', { command: 'cat locked/in/f' })).stdout, 'kept\n');
  // A module in the workspace requires the installed module offline; go test finds it.
  for (const [path, contents] of Object.entries(WORKSPACE_MODULE)) await runTool(worker.tasks, restored.sessionId, 'fs.write', { path, contents });
  const tested = await callTool(worker.tasks, restored.sessionId, 'run.shell', { command: 'go test ./...', cwd: 'app' }, 120_000);
  assert.equal(tested.result?.status, TaskStatus.STATUS_SUCCESS, tested.text.slice(-2000));
  assert.match(tested.result?.outputs.stdout ?? '', /^ok\s+app\b/m);
  await worker.sessions.destroySession({ sessionId: restored.sessionId });
  await worker.sessions.destroySession({ sessionId });
  await proxy.start();
});

const UTIL = (word: string) => `package util\n\nimport "example.com/greet"\n\nfunc Message() string { return greet.Hello("${word}") }\n`;
const UTIL_TEST =
  'package util\n\nimport "testing"\n\nfunc TestMessage(t *testing.T) {\n\tif got := Message(); got != "hello ws from the world" {\n\t\tt.Fatalf("got %q", got)\n\t}\n}\n';
const USE_UTIL = 'package main\n\nimport (\n\t"fmt"\n\n\t"session/util"\n)\n\nfunc main() { fmt.Println(util.Message()) }\n';

async function shell(sessionId: string, command: string): Promise<string> {
  const call = await callTool(worker.tasks, sessionId, 'run.shell', { command }, 120_000);
  assert.equal(call.result?.status, TaskStatus.STATUS_SUCCESS, `${command}: ${call.text.slice(-2000)}`);
  return call.result?.outputs.stdout ?? '';
}

test("the session's module is its workspace's: go test, vet, build and run work there as created; run.go builds with its requirements; pkg.install adds there", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'ws-go-module', config: { language: 'go' } });
  assert.match(await shell(sessionId, 'ls -A; cat go.mod'), /^go\.mod\nmodule session\n\ngo \d+\.\d+\n$/);
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/greet@v1.2.0' });
  assert.match(await shell(sessionId, 'cat go.mod; ls -A'), /^\texample\.com\/greet v1\.2\.0\b[\s\S]*^go\.sum$/m);
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'util/util.go', contents: UTIL('ws') });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'util/util_test.go', contents: UTIL_TEST });
  assert.match(await shell(sessionId, 'go test ./... && go vet ./... && go build ./... && echo all-ok'), /^ok\s+session\/util\b[\s\S]*^all-ok$/m);

  // go run of the workspace's own main package, which imports its util package, sees it change.
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'cmd/hello/main.go', contents: USE_UTIL });
  assert.equal(await shell(sessionId, 'go run ./cmd/hello'), 'hello ws from the world\n');
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'util/util.go', contents: UTIL('again') });
  assert.equal(await shell(sessionId, 'go run ./cmd/hello'), 'hello again from the world\n');
  // run.go builds with the module's requirements (the installed module, now required directly).
  const code = 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\nfunc main() { fmt.Println(greet.Hello("run.go")) }\n';
  assert.equal((await runTool(worker.tasks, sessionId, 'run.go', { code })).stdout, 'hello run.go from the world\n');
  const checkpoint = await worker.sessions.checkpointSession({ sessionId });
  assert.deepEqual(checkpoint.metadata?.installedPackages, ['example.com/dep@v1.0.0', 'example.com/greet@v1.2.0']);

  // A session of another language, made from a spare of Go's, starts with an empty workspace.
  const python = await worker.sessions.createSession({ workspaceId: 'ws-python', config: { language: 'python' } });
  assert.equal(await shell(python.sessionId, 'ls -A'), '');
  await worker.sessions.destroySession({ sessionId: python.sessionId });

  // Removed, the module stays removed through a checkpoint; run.go builds without one; pkg.install makes one.
  await shell(sessionId, 'rm go.mod go.sum');
  assert.equal((await runTool(worker.tasks, sessionId, 'run.go', { code: 'package main\n\nfunc main() { println("no module") }\n' })).stderr, 'no module\n');
  const bare = await worker.sessions.checkpointSession({ sessionId });
  const restored = await worker.sessions.restoreSession({ checkpointId: bare.checkpointId });
  assert.equal(await shell(restored.sessionId, 'ls -A'), 'cmd\nutil\n');
  await runTool(worker.tasks, restored.sessionId, 'pkg.install', { requirements: 'example.com/dep@v1.1.0' });
  assert.match(await shell(restored.sessionId, 'cat go.mod'), /^module session$[\s\S]*^require example\.com\/dep v1\.1\.0\b/m);
  for (const id of [sessionId, restored.sessionId]) await worker.sessions.destroySession({ sessionId: id });
});

test('a session made when its module was in its environment keeps it until pkg.install moves it to the workspace', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'ws-go-legacy', config: { language: 'go' } });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'name.txt', contents: 'legacy' });
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/greet@v1.2.0' });
  const disk = join(worker.dataDir, 'sessions', sessionId, 'disk');
  for (const name of ['go.mod', 'go.sum']) await rename(join(disk, 'workspace', name), join(disk, 'env', name));

  assert.equal((await runTool(worker.tasks, sessionId, 'run.go', { code: GREET })).stdout, 'hello legacy from the world\n');
  assert.deepEqual((await worker.sessions.checkpointSession({ sessionId })).metadata?.installedPackages, [
    'example.com/dep@v1.0.0',
    'example.com/greet@v1.2.0',
  ]);
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/dep@v1.1.0' });
  const moved = await shell(sessionId, 'ls /env; cat go.mod');
  assert.match(moved, /^gocache\ngopath\nmodule session\n/, 'the environment holds no module now');
  assert.match(moved, /^\s*example\.com\/dep v1\.1\.0\b[\s\S]*^\s*example\.com\/greet v1\.2\.0\b/m);
  assert.equal((await runTool(worker.tasks, sessionId, 'run.go', { code: GREET })).stdout, 'hello legacy from the planet\n');
  await worker.sessions.destroySession({ sessionId });
});
