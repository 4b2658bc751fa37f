import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { runTask, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Each attempt runs as run.python code in one session; each must be blocked, and the worker must
// go on serving the other session afterwards.
const SECRET = 'worker-secret-do-not-leak';
let worker: RunningWorker;
let attacker: string;
let victim: string;
let listener: Server;
let listenerPort: number;
let connections = 0;

before(async () => {
  worker = await startWorker({ env: { CODEGEN_TEST_SECRET: SECRET } });
  attacker = (await worker.sessions.createSession({ workspaceId: 'attacker' })).sessionId;
  victim = (await worker.sessions.createSession({ workspaceId: 'victim' })).sessionId;
  await runTool(worker.tasks, victim, 'fs.write', { path: 'private.txt', contents: 'victim data' });
  listener = createServer((socket) => {
    connections++;
    socket.end('hello');
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listenerPort = (listener.address() as { port: number }).port;
});

after(async () => {
  listener?.close();
  await worker?.stop();
});

/** Runs the attempt; it prints "BLOCKED ..." when stopped, "ESCAPED ..." when not. */
async function attempt(code: string): Promise<string> {
  const run = await runTask(worker.tasks, { sessionId: attacker, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 30 } });
  assert.equal(run.code, Status.OK, run.error?.details);
  const out = run.result?.outputs.stdout ?? '';
  assert.doesNotMatch(out, /ESCAPED/, `${out}\n${run.result?.outputs.stderr}`);
  assert.match(out, /BLOCKED/, `${out}\n${run.result?.outputs.stderr}`);
  // The worker still serves the other session.
  assert.equal((await runTool(worker.tasks, victim, 'run.python', { code: 'print(open("private.txt").read())' })).stdout, 'victim data\n');
  return out;
}

const TRY = (what: string, body: string) => `
try:
${body
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
    print("ESCAPED ${what}")
except Exception as e:
    print("BLOCKED ${what}", type(e).__name__, e)
`;

test('reading /etc/shadow is blocked', async () => {
  await attempt(TRY('shadow', 'print(open("/etc/shadow").read()[:20])'));
});

test("the worker's environment variables are not visible", async () => {
  await attempt(`
import os
found = [k for k, v in os.environ.items() if "${SECRET}" in v or k.startswith("WORKER_") or k.startswith("npm_")]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if b"${SECRET}" in open(f"/proc/{pid}/environ", "rb").read(): found.append(pid)
        except OSError:
            pass
print("ESCAPED env" if found else "BLOCKED env", found, sorted(os.environ))
`);
});

test("another session's files are not reachable", async () => {
  const victimWorkspace = join(worker.dataDir, 'sessions', victim, 'disk', 'workspace', 'private.txt');
  await attempt(TRY('other session', `print(open(${JSON.stringify(victimWorkspace)}).read())`));
  await attempt(`
import os
hits = []
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root.startswith("/proc") or root.startswith("/sys"): dirs[:] = []; continue
    if "private.txt" in files: hits.append(root)
print("ESCAPED walk" if hits else "BLOCKED walk", hits)
`);
});

test("the worker's data directory is not reachable", async () => {
  await attempt(TRY('data dir', `print(os.listdir(${JSON.stringify(worker.dataDir)}))`).replace('try:', 'import os\ntry:'));
});

test("the worker's processes cannot be seen or signalled", async () => {
  const workerPid = worker.process.pid!;
  await attempt(`
import os, signal
seen = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"node" in cmd or b"main.js" in cmd: seen.append(pid)
print("ESCAPED see" if seen else "BLOCKED see", seen)
try:
    os.kill(${workerPid}, signal.SIGKILL)
    print("ESCAPED kill")
except Exception as e:
    print("BLOCKED kill", type(e).__name__)
`);
  assert.equal(worker.process.exitCode, null, 'the worker still runs');
});

test('writing outside the workspace is blocked (and /tmp is private)', async () => {
  for (const path of ['/usr/evil', '/etc/evil', '/evil', '/env/evil', join(worker.dataDir, 'evil')]) {
    await attempt(TRY(`write ${path}`, `open(${JSON.stringify(path)}, "w").write("x")`));
  }
  const out = await attempt(TRY('tmp', 'open("/tmp/codegen-private-check", "w").write("x")\nraise PermissionError("tmp is writable but private")'));
  assert.match(out, /BLOCKED tmp/);
  await assert.rejects(import('node:fs/promises').then((fs) => fs.access('/tmp/codegen-private-check')));
});

test('connecting to a TCP port on loopback is blocked', async () => {
  await attempt(TRY('tcp', `import socket\ns = socket.create_connection(("127.0.0.1", ${listenerPort}), timeout=3)\nprint(s.recv(5))`));
  assert.equal(connections, 0);
});

test('escaping through a symlink with the fs tools is refused', async () => {
  await runTool(worker.tasks, attacker, 'run.python', { code: 'import os\nos.symlink("/", "root_link")' });
  for (const toolName of ['fs.read', 'fs.list', 'fs.write']) {
    const run = await runTask(worker.tasks, {
      sessionId: attacker,
      toolName,
      arguments: { path: 'root_link/etc/shadow', ...(toolName === 'fs.write' ? { contents: 'x' } : {}) },
    });
    assert.equal(run.code, Status.INVALID_ARGUMENT, toolName);
  }
});

test('code runs as an unprivileged uid with no capabilities and no new privileges', async () => {
  const run = await runTask(worker.tasks, {
    sessionId: attacker,
    toolName: 'run.python',
    arguments: { code: 'import os\nprint(os.getuid(), os.geteuid())\nprint(open("/proc/self/status").read())' },
  });
  const out = run.result?.outputs.stdout ?? '';
  const [uid = 0, euid = 0] = out.split('\n')[0]!.split(' ').map(Number);
  assert.ok(uid > 0 && euid > 0, `uid ${uid} euid ${euid}`);
  assert.match(out, /CapEff:\s+0000000000000000/);
  assert.match(out, /NoNewPrivs:\s+1/);
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
});
