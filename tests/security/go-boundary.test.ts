import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { serveGoProxy, type GoProxy } from '../helpers/goProxy.js';
import { callTool, describeCall, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The sandbox's boundaries for Go sessions. What the less trusted side controls: the code run.go
// builds, the session's variables (config.env), the requirement lines, and (short of the
// operator's trust) what the proxy serves: zips, go.mod directives. None of it may reach outside
// the session, or run anything as the installer uid or root.

let worker: RunningWorker;
let proxy: GoProxy;
let listener: Server;
let listenerPort = 0;
let connections = 0;

const SAFE = { path: 'example.com/safe', version: 'v1.0.0', files: { 'safe.go': 'package safe\n\nconst OK = "safe"\n' } };

before(async () => {
  proxy = await serveGoProxy([
    SAFE,
    // A zip climbing out of its module's directory, and one with a link out of it written through.
    {
      path: 'evil.example/slip',
      version: 'v1.0.0',
      rawEntries: [
        { name: 'evil.example/slip@v1.0.0/go.mod', data: 'module evil.example/slip\n\ngo 1.19\n' },
        { name: 'evil.example/slip@v1.0.0/../../poison-slip', data: 'slipped' },
        { name: 'evil.example/slip@v1.0.0/slip.go', data: 'package slip\n' },
      ],
    },
    {
      path: 'evil.example/link',
      version: 'v1.0.0',
      rawEntries: [
        { name: 'evil.example/link@v1.0.0/go.mod', data: 'module evil.example/link\n\ngo 1.19\n' },
        { name: 'evil.example/link@v1.0.0/out', symlink: '../..' },
        { name: 'evil.example/link@v1.0.0/out/poison-link', data: 'linked' },
        { name: 'evil.example/link@v1.0.0/link.go', data: 'package link\n' },
      ],
    },
    {
      path: 'evil.example/symlink',
      version: 'v1.0.0',
      rawEntries: [
        { name: 'evil.example/symlink@v1.0.0/go.mod', data: 'module evil.example/symlink\n\ngo 1.19\n' },
        { name: 'evil.example/symlink@v1.0.0/out', symlink: '/etc' },
        { name: 'evil.example/symlink@v1.0.0/symlink.go', data: 'package symlink\n' },
      ],
    },
    // A module that needs cgo, and one asking for a newer toolchain (which go would download from the proxy).
    {
      path: 'evil.example/cgo',
      version: 'v1.0.0',
      files: {
        'cgo.go':
          'package cgo\n\n/*\n#cgo LDFLAGS: -Wl,--version\nint answer(void) { return 42; }\n*/\nimport "C"\n\nfunc Answer() int { return int(C.answer()) }\n',
      },
    },
    {
      path: 'evil.example/newgo',
      version: 'v1.0.0',
      goMod: 'module evil.example/newgo\n\ngo 1.99\n\ntoolchain go1.99.1\n',
      files: { 'newgo.go': 'package newgo\n\nconst V = "new"\n' },
    },
  ]);
  listener = createServer((socket) => {
    connections++;
    socket.end('hello');
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listenerPort = (listener.address() as { port: number }).port;
  worker = await startWorker({ env: { WORKER_LANGUAGES: 'go', WORKER_GOPROXY: proxy.url, WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => {
  listener?.close();
  await worker?.stop();
  await proxy?.close();
});

const session = async (workspaceId: string, env: Record<string, string> = {}) =>
  (await worker.sessions.createSession({ workspaceId, config: { language: 'go', env } })).sessionId;

test("go code runs as the session's uid, sees no host secret, path or network, nor another session, and writes only its build cache of the environment", async () => {
  const victim = await session('victim');
  await runTool(worker.tasks, victim, 'fs.write', { path: 'private.txt', contents: 'victim data' });
  const attacker = await session('attacker');
  const code = `package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	fmt.Println("uid", os.Getuid() != 0)
	_, err := os.ReadFile("/etc/shadow")
	fmt.Println("shadow-hidden", err != nil)
	for _, p := range []string{${JSON.stringify(worker.dataDir)}, "/root", "/home", "/var/lib"} {
		_, err := os.Stat(p)
		fmt.Println("hidden", p, err != nil)
	}
	found, _ := filepath.Glob("/*/private.txt")
	more, _ := filepath.Glob("/*/*/private.txt")
	fmt.Println("victim-files", len(found)+len(more))
	c, err := net.DialTimeout("tcp", "127.0.0.1:${listenerPort}", 2*time.Second)
	if err == nil {
		c.Close()
	}
	fmt.Println("network-blocked", err != nil)
	fmt.Println("env-readonly", os.WriteFile("/env/go.mod", []byte("module evil\\n"), 0o644) != nil)
	fmt.Println("modcache-readonly", os.WriteFile("/env/gopath/pkg/mod/planted", []byte("x"), 0o644) != nil)
	fmt.Println("buildcache-writable", os.WriteFile("/env/gocache/mine", []byte("x"), 0o644) == nil)
}
`;
  const out = await runTool(worker.tasks, attacker, 'run.go', { code });
  assert.equal(
    out.stdout,
    [
      'uid true',
      'shadow-hidden true',
      `hidden ${worker.dataDir} true`,
      'hidden /root true',
      'hidden /home true',
      'hidden /var/lib true',
      'victim-files 0',
      'network-blocked true',
      'env-readonly true',
      'modcache-readonly true',
      'buildcache-writable true',
      '',
    ].join('\n'),
  );
  assert.equal(connections, 0);
  for (const id of [attacker, victim]) await worker.sessions.destroySession({ sessionId: id });
});

test("a session's variables change nothing of pkg.install: modules come from WORKER_GOPROXY, nothing runs as the installer or the session's tools", async () => {
  const dead = 'http://127.0.0.1:9';
  const hostile = {
    GOFLAGS: '-modfile=/workspace/evil.mod -toolexec=/workspace/evil.sh',
    GOPROXY: dead,
    GONOPROXY: '*',
    GOPRIVATE: '*',
    GOINSECURE: '*',
    GOSUMDB: 'sum.golang.org',
    GOVCS: '*:all',
    GOENV: '/workspace/evil.env',
    GOTOOLCHAIN: 'go1.99.1',
    GOWORK: '/workspace/go.work',
    GOMODCACHE: '/workspace/modcache',
    GOPATH: '/workspace/gopath',
    CC: '/workspace/evil.sh',
    CGO_ENABLED: '1',
    HOME: '/workspace',
    HTTP_PROXY: dead,
    http_proxy: dead,
    LD_PRELOAD: '/workspace/nothing.so',
  };
  const sessionId = await session('hostile-env', hostile);
  await runTool(worker.tasks, sessionId, 'fs.write', {
    path: 'evil.sh',
    contents: '#!/bin/sh\ntouch "/workspace/ran-as-$(id -u)" "/tmp/ran-as-$(id -u)"\nexec "$@"\n',
  });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'evil.env', contents: `GOPROXY=${dead}\nGOFLAGS=-toolexec=/workspace/evil.sh\n` });
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'go.work', contents: 'go 1.19\n\nuse ./elsewhere\n' });
  await runTool(worker.tasks, sessionId, 'run.shell', { command: 'chmod 755 evil.sh' });
  const before = proxy.requests.length;
  const installed = await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/safe@v1.0.0' });
  assert.equal(installed.installed, 'example.com/safe@v1.0.0');
  assert.ok(proxy.requests.slice(before).includes('/example.com/safe/@v/v1.0.0.zip'), 'fetched from the configured proxy');
  const left = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'ls -a /workspace; grep -c example.com/safe /workspace/go.mod' });
  assert.deepEqual(left.stdout!.trim().split('\n'), ['.', '..', 'evil.env', 'evil.sh', 'go.mod', 'go.sum', 'go.work', '1']);
  assert.equal(existsSync(join(worker.dataDir, 'caches', 'go-cache', 'ran-as-0')), false);
  await worker.sessions.destroySession({ sessionId });
});

test('zips with paths out of their module or links out of it are refused, and write nothing outside it', async () => {
  const sessionId = await session('zips');
  for (const module of ['evil.example/slip@v1.0.0', 'evil.example/link@v1.0.0']) {
    const call = await callTool(worker.tasks, sessionId, 'pkg.install', { requirements: module }, 60_000);
    assert.notEqual(call.result?.status, TaskStatus.STATUS_SUCCESS, describeCall(call));
    assert.equal(call.code, Status.INTERNAL, describeCall(call));
    assert.match(call.details, /package install failed: .*(malformed file path|both a file and a directory)/, describeCall(call));
  }
  // A link alone: refused, or made a plain file; never a link.
  const linked = await callTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'evil.example/symlink@v1.0.0' }, 60_000);
  assert.ok(linked.result, describeCall(linked));
  const links = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'find /env -type l | wc -l' });
  assert.equal(links.stdout, '0\n');
  const cache = join(worker.dataDir, 'caches', 'go-cache');
  for (const poison of ['poison-slip', 'poison-link', 'evil.example/poison-slip']) assert.equal(existsSync(join(cache, poison)), false, poison);
  const env = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'find /env /workspace -name "poison-*" | wc -l; cat /workspace/go.mod' });
  assert.match(env.stdout!, /^0\n/);
  assert.doesNotMatch(env.stdout!, /evil\.example\/(slip|link) /);
  await worker.sessions.destroySession({ sessionId });
});

test('a module needing cgo installs (nothing is built) but does not build: no C compiler runs; one asking for a newer toolchain gets no download', async () => {
  const sessionId = await session('cgo-and-toolchain');
  assert.equal((await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'evil.example/cgo@v1.0.0' })).installed, 'evil.example/cgo@v1.0.0');
  const built = await callTool(worker.tasks, sessionId, 'run.go', {
    code: 'package main\n\nimport (\n\t"fmt"\n\n\t"evil.example/cgo"\n)\n\nfunc main() { fmt.Println(cgo.Answer()) }\n',
  });
  assert.equal(built.result?.status, TaskStatus.STATUS_FAILURE, describeCall(built));
  assert.match(built.result?.outputs.stderr ?? '', /build constraints exclude all Go files/);

  const newer = await callTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'evil.example/newgo@v1.0.0' }, 60_000);
  if (newer.result?.status === TaskStatus.STATUS_SUCCESS) {
    const ran = await callTool(worker.tasks, sessionId, 'run.go', {
      code: 'package main\n\nimport (\n\t"fmt"\n\n\t"evil.example/newgo"\n)\n\nfunc main() { fmt.Println(newgo.V) }\n',
    });
    assert.ok(ran.result, describeCall(ran));
  }
  assert.deepEqual(
    proxy.requests.filter((r) => r.startsWith('/golang.org/toolchain')),
    [],
    'no toolchain was asked of the proxy',
  );
  const goMod = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'cat /workspace/go.mod' });
  assert.doesNotMatch(goMod.stdout!, /^toolchain/m);
  await worker.sessions.destroySession({ sessionId });
});

test("what the session's code planted in its build cache does not steer pkg.install's go get (which runs with the whole environment writable)", async () => {
  const planter = await session('planter');
  // gocache/ is the one part of /env its code may write: links there, to where go would write its cache files.
  const plant = await callTool(worker.tasks, planter, 'run.shell', {
    command:
      'cd /env/gocache && for f in README trim.txt; do rm -f $f; ln -s ../planted-$f $f; done; for d in 00 01 0a ff; do rm -rf $d; ln -s .. $d; done; ls -la | head -3',
  });
  assert.equal(plant.result?.outputs.exit_code, '0', describeCall(plant));
  const install = await callTool(worker.tasks, planter, 'pkg.install', { requirements: `${SAFE.path}@${SAFE.version}` }, 60_000);
  assert.equal(install.code, Status.OK, describeCall(install));
  const look = await callTool(worker.tasks, planter, 'run.shell', { command: 'ls /env' });
  assert.doesNotMatch(look.result?.outputs.stdout ?? '', /planted/, 'go get wrote through a planted link');
  await worker.sessions.destroySession({ sessionId: planter });
});

/** Every entry under `dir` with its bytes' (or link's) hash: what changed shows as a difference. */
function treeState(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort().map((name) => {
    const path = join(dir, name);
    const st = lstatSync(path);
    const data = st.isSymbolicLink() ? readlinkSync(path) : st.isFile() ? readFileSync(path) : '';
    return `${name} ${st.mode} ${createHash('sha256').update(data).digest('hex')}`;
  });
}

test("the workspace's go.mod is the session's to write: linked into the shared cache or replacing into it, pkg.install changes nothing outside the session", async () => {
  const first = await session('cache-filler');
  await runTool(worker.tasks, first, 'pkg.install', { requirements: 'example.com/safe@v1.0.0\nevil.example/cgo@v1.0.0' });
  const cache = join(worker.dataDir, 'caches', 'go-cache');
  const before = treeState(cache);

  const attacker = await session('gomod-attacker');
  // Where pkg.install's second step shows the shared cache (read-only): go get writes go.mod through the link.
  await runTool(worker.tasks, attacker, 'run.shell', { command: 'rm go.mod && ln -s /go-cache/cache/download/example.com/safe/@v/v1.0.0.mod go.mod' });
  const linked = await callTool(worker.tasks, attacker, 'pkg.install', { requirements: 'evil.example/cgo@v1.0.0' }, 60_000);
  assert.equal(linked.result?.status, TaskStatus.STATUS_FAILURE, describeCall(linked));
  assert.match(linked.details, /package install failed: go: .*(read-only file system|go\.mod)/, describeCall(linked));

  const replacing = 'module session\n\ngo 1.19\n\nrequire example.com/safe v1.0.0\n\nreplace example.com/safe => /go-cache/example.com/safe@v1.0.0\n';
  await runTool(worker.tasks, attacker, 'run.shell', {
    command: `rm go.mod && printf '%s' '${replacing}' > go.mod && mkdir -p p && printf 'package p\\n\\nimport _ "example.com/safe"\\n' > p/p.go`,
  });
  const replaced = await callTool(worker.tasks, attacker, 'pkg.install', { requirements: 'example.com/safe@v1.0.0' }, 60_000);
  assert.ok(replaced.result, describeCall(replaced));
  assert.deepEqual(treeState(cache), before, 'the shared cache is as it was');

  // The worker and its other sessions are unharmed.
  const other = await session('after-attack');
  assert.equal((await runTool(worker.tasks, other, 'pkg.install', { requirements: 'example.com/safe@v1.0.0' })).installed, 'example.com/safe@v1.0.0');
  for (const id of [first, attacker, other]) await worker.sessions.destroySession({ sessionId: id });
});
