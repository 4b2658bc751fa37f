import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { serveGoProxy, type GoProxy } from '../helpers/goProxy.js';
import { callTool, describeCall, runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Found by an attack on run.go's program cache (a helper session with fresh eyes): a program
// cached under a key that does not cover everything its build read runs again after those
// files changed (a stale program). Each test failed on the launcher before its fix: code
// importing the workspace's own packages in ways a text match missed, a vendor/ copy, a go.mod
// swapped by session code mid-build; and a checkpoint naming modules the session never had.

let worker: RunningWorker;
let proxy: GoProxy;

before(async () => {
  proxy = await serveGoProxy([
    { path: 'example.com/dep', version: 'v1.0.0', files: { 'dep.go': 'package dep\n\nconst Word = "world"\n' } },
    { path: 'example.com/dep', version: 'v1.1.0', files: { 'dep.go': 'package dep\n\nconst Word = "planet"\n' } },
  ]);
  worker = await startWorker({ env: { WORKER_LANGUAGES: 'go', WORKER_GOPROXY: proxy.url } });
});

after(async () => {
  await worker?.stop();
  await proxy?.close();
});

const session = async (workspaceId: string, env: Record<string, string> = {}) =>
  (await worker.sessions.createSession({ workspaceId, config: { language: 'go', env } })).sessionId;
const write = (sessionId: string, path: string, contents: string) => runTool(worker.tasks, sessionId, 'fs.write', { path, contents });
const utilGo = (value: string) => `package util\n\nconst V = "${value}"\n`;
const importing = (spec: string) => `package main\n\nimport (\n\t"fmt"\n\n\tu ${spec}\n)\n\nfunc main() { fmt.Println(u.V) }\n`;

/** run.go's stdout, or its failure. */
async function runGo(sessionId: string, code: string): Promise<string> {
  const call = await callTool(worker.tasks, sessionId, 'run.go', { code }, 60_000);
  return call.result?.status === TaskStatus.STATUS_SUCCESS ? (call.result.outputs.stdout ?? '') : `failed: ${describeCall(call, 300)}`;
}

const VARIANTS: { name: string; goMod?: string; spec: string }[] = [
  { name: 'a raw-string import path', spec: '`session/util`' },
  { name: 'an escaped import path', spec: '"sess\\x69on/util"' },
  { name: 'a go.mod whose module line is indented', goMod: '  module session\n\ngo 1.19\n', spec: '"session/util"' },
  { name: 'a go.mod with the module in a block', goMod: 'module (\n\tsession\n)\n\ngo 1.19\n', spec: '"session/util"' },
  { name: 'a go.mod with a comment glued to the module path', goMod: 'module session// mine\n\ngo 1.19\n', spec: '"session/util"' },
];

test("code naming the workspace's own packages (however spelled) never runs a program built from their old text", async () => {
  const sessionId = await session('stale-spellings');
  for (const variant of VARIANTS) {
    await write(sessionId, 'go.mod', variant.goMod ?? 'module session\n\ngo 1.19\n');
    await write(sessionId, 'util/util.go', utilGo('one'));
    const first = await runGo(sessionId, importing(variant.spec));
    await write(sessionId, 'util/util.go', utilGo('two'));
    const second = await runGo(sessionId, importing(variant.spec));
    assert.notEqual(second, 'one\n', `${variant.name}: the program of the old util package ran (first: ${first})`);
  }
  await worker.sessions.destroySession({ sessionId });
});

test('with GOFLAGS=-mod=vendor (config.env may set GOFLAGS), a changed vendor/ never runs as the old program', async () => {
  const sessionId = await session('stale-vendor', { GOFLAGS: '-mod=vendor' });
  await write(sessionId, 'go.mod', 'module session\n\ngo 1.19\n\nrequire example.com/fake v1.0.0\n');
  await write(sessionId, 'vendor/modules.txt', '# example.com/fake v1.0.0\n## explicit\nexample.com/fake\n');
  const code = importing('"example.com/fake"');
  await write(sessionId, 'vendor/example.com/fake/fake.go', 'package fake\n\nconst V = "one"\n');
  const first = await runGo(sessionId, code);
  await write(sessionId, 'vendor/example.com/fake/fake.go', 'package fake\n\nconst V = "two"\n');
  assert.notEqual(await runGo(sessionId, code), 'one\n', `the program built from the old vendor/ copy ran (first: ${first})`);
  await worker.sessions.destroySession({ sessionId });
});

// A background process of the session swaps go.mod right after the launcher's first, second or
// third read of it (to hash it), before the build reads it: the program built from the other
// go.mod must not be found under the first one's key.
const WATCHER = `package main

import (
	"os"
	"syscall"
	"unsafe"
)

func main() {
	fd, err := syscall.InotifyInit()
	if err != nil {
		panic(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, "/workspace", syscall.IN_CLOSE_NOWRITE); err != nil {
		panic(err)
	}
	os.WriteFile("/workspace/watching", nil, 0o644)
	closes, swapAt := 0, int(os.Args[1][0]-'0')
	buf := make([]byte, 65536)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			panic(err)
		}
		for off := 0; off < n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			if len(name) >= 6 && string(name[:6]) == "go.mod" && (len(name) == 6 || name[6] == 0) {
				if closes++; closes == swapAt {
					os.Rename("/workspace/other.mod", "/workspace/go.mod")
					return
				}
			}
		}
	}
}
`;

test('a go.mod swapped by session code while run.go builds leaves no program cached for the go.mod it was not built from', async () => {
  const sessionId = await session('stale-race');
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/dep@v1.0.0' });
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/dep@v1.1.0' });
  const sums = (await runTool(worker.tasks, sessionId, 'run.shell', { command: 'go mod download -json example.com/dep@v1.0.0 >/dev/null; cat go.sum' }))
    .stdout!;
  const goMod = (version: string) => `module session\n\ngo 1.19\n\nrequire example.com/dep ${version}\n`;
  await write(sessionId, 'watch/main.go', WATCHER);
  const built = await callTool(worker.tasks, sessionId, 'run.shell', { command: 'go build -o /workspace/.watch ./watch && rm -r watch' }, 60_000);
  assert.equal(built.result?.outputs.exit_code, '0', describeCall(built));
  // For each read the swap may follow: attempts until it lands between that read and the build
  // (each with other code, so no program is cached yet), then the first go.mod back in place.
  // A swap after a read the launcher does not make never lands; one of them must.
  let attempt = 0;
  let landed = 0;
  for (const swapAt of [1, 2, 3]) {
    for (let tries = 0; tries < 4; tries++) {
      const code = `package main\n\nimport (\n\t"fmt"\n\n\t"example.com/dep"\n)\n\n// attempt ${attempt++}\nfunc main() { fmt.Println(dep.Word) }\n`;
      await write(sessionId, 'go.sum', sums);
      await write(sessionId, 'go.mod', goMod('v1.0.0'));
      await write(sessionId, 'other.mod', goMod('v1.1.0'));
      await runTool(worker.tasks, sessionId, 'run.shell', { command: `rm -f watching; /workspace/.watch ${swapAt}`, background: 'true' });
      await waitFor(async () => (await runTool(worker.tasks, sessionId, 'fs.list', { path: '.' })).entries_json!.includes('"watching"'));
      const raced = await runGo(sessionId, code);
      await runTool(worker.tasks, sessionId, 'run.shell', { command: 'pkill -x .watch || true' });
      if (raced !== 'planet\n') continue; // built from go.mod as it was, or the launcher read it fewer times
      await write(sessionId, 'go.mod', goMod('v1.0.0'));
      assert.equal(await runGo(sessionId, code), 'world\n', `after read ${swapAt}: the program built from the swapped go.mod ran under the first one`);
      landed++;
      break;
    }
  }
  assert.ok(landed > 0, 'no swap landed between a read and the build');
  await worker.sessions.destroySession({ sessionId });
});

test("a checkpoint's installed_packages names modules the session's environment holds, not whatever its go.mod claims", async () => {
  const sessionId = await session('record-lies');
  await runTool(worker.tasks, sessionId, 'pkg.install', { requirements: 'example.com/dep@v1.0.0' });
  await write(
    sessionId,
    'go.mod',
    'module session\n\ngo 1.19\n\nrequire (\n\texample.com/dep v1.0.0\n\tghost.example/never v9.9.9\n\tgolang.org/x/crypto v0.99.0\n)\n',
  );
  const checkpoint = await worker.sessions.checkpointSession({ sessionId });
  assert.deepEqual(checkpoint.metadata?.installedPackages, ['example.com/dep@v1.0.0']);
  await worker.sessions.destroySession({ sessionId });
});
