import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { SessionState, TaskStatus } from '../gen/codegen/v1/common.js';
import { isAlive, runTask, runTool, waitFor } from './helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from './helpers/worker.js';

// Processes that outlive the task that started them (run.shell background), and the tools that
// reach them: proc.list, proc.output, proc.stdin, proc.signal.

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_BACKGROUND: '3', WORKER_PROCESS_OUTPUT_KB: '4' } });
});
after(async () => worker?.stop());

const session = async (config = {}) => (await worker.sessions.createSession({ workspaceId: 'background', config })).sessionId;

const start = async (sessionId: string, command: string) => runTool(worker.tasks, sessionId, 'run.shell', { command, background: 'true' });

interface Listed {
  process_id: string;
  command: string;
  pid: number;
  started_at_ms: number;
  running: boolean;
  exit_code: number | null;
  killed_by: string | null;
}

const list = async (sessionId: string): Promise<Listed[]> => JSON.parse((await runTool(worker.tasks, sessionId, 'proc.list', {})).processes_json!) as Listed[];

const outputOf = async (sessionId: string, processId: string, since = 0) =>
  runTool(worker.tasks, sessionId, 'proc.output', { process_id: processId, since: String(since) });

/** Waits until the process's output holds `text`; resolves its outputs then. */
async function printed(sessionId: string, processId: string, text: string): Promise<Record<string, string>> {
  let last: Record<string, string> = {};
  await waitFor(async () => (last = await outputOf(sessionId, processId)).output!.includes(text), 20_000).catch(() => {
    throw new Error(`process ${processId} never printed ${JSON.stringify(text)}; it printed ${JSON.stringify(last.output)}`);
  });
  return last;
}

/** The directories of the session's background cgroups (pids hierarchy, relative), and the host pids in them. */
const backgroundGroups = (w: RunningWorker, sessionId: string) => {
  // The known path (worker's own group, its subtree, the session), not a recursive walk: other
  // tests' task groups vanish mid-walk.
  const pid = w.process.pid!;
  const own = /^\d+:pids:(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1]!;
  const sessionGroup = join(own, `codegen-${pid}`, sessionId).slice(1);
  return childrenOf(sessionGroup)
    .filter((d) => /^bg-\d+$/.test(d))
    .map((d) => `${sessionGroup}/${d}`);
};
const childrenOf = (group: string) => unlessGone(() => readdirSync(`/sys/fs/cgroup/pids/${group}`));
const backgroundHostPids = (w: RunningWorker, sessionId: string) =>
  backgroundGroups(w, sessionId).flatMap((g) =>
    unlessGone(() => readFileSync(`/sys/fs/cgroup/pids/${g}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number)),
  );
/** What `read` gives, or nothing when its cgroup went away meanwhile. */
function unlessGone<T>(read: () => T[]): T[] {
  try {
    return read();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Runs `body` with workers it starts on one data directory of its own (a restart's), all stopped and the directory removed after. */
async function onOneDataDirectory(body: (startOne: () => Promise<RunningWorker>) => Promise<void>): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-background-restart-'));
  const started: RunningWorker[] = [];
  try {
    await body(async () => {
      const w = await startWorker({ dataDir, env: { WORKER_SPARE_SESSIONS: '0' } });
      started.push(w);
      return w;
    });
  } finally {
    for (const w of started) await stopHard(w);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

test('a background process runs on after its task, as the session, is listed, read, and ended by a signal', async () => {
  const sessionId = await session();
  const started = await start(sessionId, 'id -u; echo ready; exec sleep 1000');
  assert.match(started.process_id!, /^p\d+$/);
  assert.ok(Number(started.pid) > 0, `a pid: ${started.pid}`);
  const out = await printed(sessionId, started.process_id!, 'ready');
  const uid = out.output!.split('\n')[0];
  const own = (await runTool(worker.tasks, sessionId, 'run.shell', { command: 'id -u' })).stdout!.trim();
  assert.equal(uid, own, "runs as the session's own uid (a task's), never root or the installer");
  assert.notEqual(uid, '0');
  assert.equal(out.running, 'true');

  const [listed] = await list(sessionId);
  assert.equal(listed?.process_id, started.process_id);
  assert.equal(listed?.command, 'id -u; echo ready; exec sleep 1000');
  assert.equal(listed?.running, true);
  assert.equal(listed?.exit_code, null);

  // Another task meanwhile: the background process is unaffected.
  assert.equal((await runTool(worker.tasks, sessionId, 'run.shell', { command: 'echo other' })).stdout, 'other\n');
  assert.equal((await list(sessionId))[0]?.running, true);

  assert.equal((await runTool(worker.tasks, sessionId, 'proc.signal', { process_id: started.process_id!, signal: 'TERM' })).signal, 'TERM');
  await waitFor(async () => !(await list(sessionId))[0]?.running, 10_000);
  const ended = (await list(sessionId))[0]!;
  assert.equal(ended.exit_code, 128 + 15);
  assert.equal(ended.killed_by, 'signal');
  await worker.sessions.destroySession({ sessionId });
});

test('proc.output reads from an offset, keeps the last WORKER_PROCESS_OUTPUT_KB, and follows live until the process exits', async () => {
  const sessionId = await session();
  // 10 KB, then a line the test waits for, then more after a pause.
  const { process_id } = await start(
    sessionId,
    'i=0; while [ $i -lt 1000 ]; do echo 123456789; i=$((i+1)); done; echo middle; sleep 1; echo late >&2; echo last',
  );
  const out = await printed(sessionId, process_id!, 'middle');
  assert.equal(Number(out.next) - Number(out.oldest), 4096, 'the ring keeps 4 KB');
  assert.ok(Number(out.oldest) > 0, 'the oldest bytes went');
  assert.equal(out.output!.length, 4096);
  assert.ok(out.output!.endsWith('middle\n'));
  const from = Number(out.next);

  const followed = await runTask(worker.tasks, {
    sessionId,
    toolName: 'proc.output',
    arguments: { process_id: process_id!, since: String(from), follow: 'true' },
  });
  assert.equal(followed.result?.status, TaskStatus.STATUS_SUCCESS);
  assert.deepEqual(
    followed.logs.map((l) => [l.source, l.message]),
    [
      ['stderr', 'late\n'],
      ['stdout', 'last\n'],
    ],
  );
  assert.equal(followed.result?.outputs.running, 'false');
  assert.equal(followed.result?.outputs.exit_code, '0');
  assert.equal(Number(followed.result?.outputs.next), from + 'late\nlast\n'.length);
  await worker.sessions.destroySession({ sessionId });
});

test('proc.stdin feeds an interactive program line by line; eof ends its input', async () => {
  const sessionId = await session();
  const { process_id } = await start(sessionId, 'while read line; do echo "got $line"; done; echo bye');
  await runTool(worker.tasks, sessionId, 'proc.stdin', { process_id: process_id!, data: 'one\n' });
  await printed(sessionId, process_id!, 'got one');
  await runTool(worker.tasks, sessionId, 'proc.stdin', {
    process_id: process_id!,
    data: Buffer.from('two\n').toString('base64'),
    encoding: 'base64',
    eof: 'true',
  });
  const out = await printed(sessionId, process_id!, 'bye');
  assert.equal(out.output, 'got one\ngot two\nbye\n');
  await waitFor(async () => !(await list(sessionId))[0]?.running, 10_000);
  assert.equal((await list(sessionId))[0]?.exit_code, 0);
  const late = await runTask(worker.tasks, { sessionId, toolName: 'proc.stdin', arguments: { process_id: process_id!, data: 'x' } });
  assert.equal(late.code, Status.FAILED_PRECONDITION, 'an exited process takes no input');
  await worker.sessions.destroySession({ sessionId });
});

test('WORKER_MAX_BACKGROUND bounds a session; unknown ids and bad arguments are clear errors', async () => {
  const sessionId = await session();
  for (let i = 0; i < 3; i++) await start(sessionId, 'exec sleep 1000');
  const fourth = await runTask(worker.tasks, { sessionId, toolName: 'run.shell', arguments: { command: 'sleep 1', background: 'true' } });
  assert.equal(fourth.code, Status.RESOURCE_EXHAUSTED);
  assert.match(fourth.error!.details, /WORKER_MAX_BACKGROUND/);
  const other = await session();
  await start(other, 'exec sleep 1000'); // another session's own count
  const codeOf = async (toolName: string, args: Record<string, string>) => (await runTask(worker.tasks, { sessionId, toolName, arguments: args })).code;
  assert.equal(await codeOf('proc.output', { process_id: 'p99' }), Status.NOT_FOUND);
  assert.equal(await codeOf('proc.signal', { process_id: 'p1', signal: 'BOOM' }), Status.INVALID_ARGUMENT);
  assert.equal(await codeOf('proc.stdin', { process_id: 'p1', data: '%%', encoding: 'base64' }), Status.INVALID_ARGUMENT);
  assert.equal(await codeOf('proc.output', { process_id: 'p1', since: '-1' }), Status.INVALID_ARGUMENT);
  assert.equal(await codeOf('run.shell', { command: 'true', background: 'yes' }), Status.INVALID_ARGUMENT);
  assert.equal(
    (await runTask(worker.tasks, { sessionId: other, toolName: 'proc.output', arguments: { process_id: 'p2' } })).code,
    Status.NOT_FOUND,
    "another session's ids are not this one's",
  );
  await worker.sessions.destroySession({ sessionId });
  await worker.sessions.destroySession({ sessionId: other });
});

test("a background memory hog or fork bomb is stopped by the session's limits; DestroySession leaves no process or cgroup", async () => {
  const sessionId = await session({ limits: { maxMemoryMb: 64, maxCpuPercent: 0, maxDiskMb: 0, timeoutSeconds: 0 } });
  const hog = await start(sessionId, 'python3 -c "b = bytearray(0)\nwhile True: b += bytearray(8 << 20)"');
  await waitFor(async () => (await list(sessionId)).find((p) => p.process_id === hog.process_id)?.running === false, 30_000);
  assert.equal((await list(sessionId)).find((p) => p.process_id === hog.process_id)?.killed_by, 'memory');

  // Started first: at its pids limit the session cannot start another sandbox (its own doing).
  const sleeper = await start(sessionId, 'echo up; exec sleep 1000');
  await printed(sessionId, sleeper.process_id!, 'up');
  const bomb = await start(sessionId, 'python3 -c "import os\nwhile True:\n  try: os.fork()\n  except OSError: pass"');
  // The neighbour session is served meanwhile.
  const neighbour = await session();
  assert.equal((await runTool(worker.tasks, neighbour, 'run.python', { code: 'print(6*7)' })).stdout, '42\n');

  const listed = await list(sessionId);
  assert.equal(listed.find((p) => p.process_id === sleeper.process_id)?.running, true, 'the sleeper runs on');
  // The bomb is held by the session's pids limit, running on; on a busy host its forks' memory
  // can reach the session's 64 MB first, and that limit ends it (make test saw it once).
  const state = listed.find((p) => p.process_id === bomb.process_id);
  assert.ok(state?.running === true || state?.killed_by === 'memory', JSON.stringify(state));
  const hostPids = backgroundHostPids(worker, sessionId);
  if (state?.running) assert.ok(hostPids.length > 2, `the bomb's processes and the sleeper: ${hostPids.length}`);
  await worker.sessions.destroySession({ sessionId });
  await worker.sessions.destroySession({ sessionId: neighbour });
  assert.deepEqual(backgroundGroups(worker, sessionId), [], 'no background cgroup left');
  assert.deepEqual(
    hostPids.filter((pid) => isAlive(pid)),
    [],
    'no background process left',
  );
});

test("a server started in the background is reached on localhost by the session's later tasks, and by no other session", async () => {
  const sessionId = await session();
  const { process_id } = await start(sessionId, 'exec python3 -m http.server 8000 --bind 127.0.0.1');
  await printed(sessionId, process_id!, 'Serving HTTP');
  const fetch =
    "import urllib.request\ntry:\n    print(urllib.request.urlopen('http://127.0.0.1:8000/', timeout=5).status)\nexcept OSError as e:\n    print(type(e).__name__)";
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: fetch })).stdout, '200\n', 'a warm call');
  const other = await session();
  assert.equal((await runTool(worker.tasks, other, 'run.python', { code: fetch })).stdout, 'URLError\n', "another session's localhost is its own");
  await worker.sessions.destroySession({ sessionId });
  await worker.sessions.destroySession({ sessionId: other });
});

/** A WebSocket echo server in Python's standard library (one client, text frames up to 125 bytes). */
const WS_ECHO = String.raw`
import base64, hashlib, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8765))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(1024)
    key = [l.split(b": ", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    frame = c.recv(2 + 4 + 125)
    n = frame[1] & 0x7f
    mask, data = frame[2:6], frame[6:6 + n]
    text = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    c.sendall(bytes([0x81, len(text)]) + text)
    c.close()
`;

/** Opens a WebSocket at `url`, sends `text`, resolves the first text frame back. */
function webSocketEcho(url: string, text: string): Promise<string> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(target.port), target.hostname, () => {
      socket.write(
        `GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    let buffered = Buffer.alloc(0);
    let upgraded = false;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!upgraded) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        const status = buffered.subarray(0, buffered.indexOf('\r\n')).toString();
        if (!status.includes(' 101 ')) return reject(new Error(`no upgrade: ${status}`));
        upgraded = true;
        buffered = buffered.subarray(end + 4);
        const mask = randomBytes(4);
        const data = Buffer.from(text);
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | data.length]), mask, Buffer.from(data.map((b, i) => b ^ mask[i % 4]!))]));
      }
      if (upgraded && buffered.length >= 2 && buffered.length >= 2 + (buffered[1]! & 0x7f)) {
        resolve(buffered.subarray(2, 2 + (buffered[1]! & 0x7f)).toString());
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

test('port.url reaches a background server from outside, HTTP and WebSocket; a changed, expired or other session’s URL reaches nothing', async () => {
  const sessionId = await session();
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'hello.txt', contents: 'hello from the session\n' });
  const web = await start(sessionId, 'exec python3 -m http.server 8000 --bind 127.0.0.1');
  await printed(sessionId, web.process_id!, 'Serving HTTP');
  const { url } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8000' });
  const page = await fetch(`${url}hello.txt`);
  assert.equal(page.status, 200);
  assert.equal(await page.text(), 'hello from the session\n');

  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'echo.py', contents: WS_ECHO });
  const ws = await start(sessionId, 'exec python3 echo.py');
  await printed(sessionId, ws.process_id!, 'listening');
  const { url: wsUrl } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8765' });
  assert.equal(await webSocketEcho(wsUrl!, 'ping through the worker'), 'ping through the worker');

  // Nothing listens there: 502, the session goes on.
  const { url: closed } = await runTool(worker.tasks, sessionId, 'port.url', { port: '9' });
  assert.equal((await fetch(closed!)).status, 502);

  // Changed: another port, another session, another signature. Expired.
  const other = await session();
  const parts = new URL(url!).pathname.split('/'); // ['', 'ports', session, port, expiry, signature, '']
  const changed = (i: number, value: string) => {
    const p = [...parts];
    p[i] = value;
    return new URL(p.join('/'), url).href;
  };
  for (const bad of [changed(3, '8765'), changed(2, other), changed(5, '0'.repeat(64)), changed(4, String(Date.now() + 3_600_000_000))])
    assert.equal((await fetch(`${bad}hello.txt`)).status, 403, bad);
  const { url: brief } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8000', expires_seconds: '1' });
  await waitFor(async () => (await fetch(`${brief}hello.txt`)).status === 403, 5_000);
  const badArgs = await runTask(worker.tasks, { sessionId, toolName: 'port.url', arguments: { port: '70000' } });
  assert.equal(badArgs.code, Status.INVALID_ARGUMENT);
  await worker.sessions.destroySession({ sessionId });
  await worker.sessions.destroySession({ sessionId: other });
});

test('a background process with pty runs on a terminal: tty names it, stty size follows proc.resize, proc.stdin types into it', async () => {
  const sessionId = await session();
  const { process_id } = await runTool(worker.tasks, sessionId, 'run.shell', {
    command: 'tty; stty size; while read line; do [ "$line" = size ] && stty size; [ "$line" = quit ] && exit 3; done',
    background: 'true',
    pty: 'true',
    rows: '30',
    cols: '100',
  });
  const first = await printed(sessionId, process_id!, '30 100');
  assert.match(first.output!, /^\/dev\/pts\/\d+\r?\n30 100\r?\n/);
  assert.equal((await runTool(worker.tasks, sessionId, 'proc.resize', { process_id: process_id!, rows: '50', cols: '132' })).rows, '50');
  await runTool(worker.tasks, sessionId, 'proc.stdin', { process_id: process_id!, data: 'size\n' });
  await printed(sessionId, process_id!, '50 132');
  await runTool(worker.tasks, sessionId, 'proc.stdin', { process_id: process_id!, data: 'quit\n' });
  await waitFor(async () => !(await list(sessionId))[0]?.running, 10_000);
  const ended = (await list(sessionId))[0]!;
  assert.equal(ended.exit_code, 3);
  assert.equal((ended as Listed & { pty: boolean }).pty, true);
  const notTerminal = await start(sessionId, 'exec sleep 100');
  const refused = await runTask(worker.tasks, { sessionId, toolName: 'proc.resize', arguments: { process_id: notTerminal.process_id!, rows: '5', cols: '5' } });
  assert.equal(refused.code, Status.FAILED_PRECONDITION);
  assert.equal(
    (await runTask(worker.tasks, { sessionId, toolName: 'run.shell', arguments: { command: 'tty', pty: 'true' } })).code,
    Status.INVALID_ARGUMENT,
    'pty needs background',
  );
  await worker.sessions.destroySession({ sessionId });
});

test('a worker restart ends background processes; the session comes back without them', () =>
  onOneDataDirectory(async (startOne) => {
    const first = await startOne();
    const { sessionId } = await first.sessions.createSession({ workspaceId: 'restart' });
    const started = await runTool(first.tasks, sessionId, 'run.shell', { command: 'echo up; exec sleep 1000', background: 'true' });
    await waitFor(async () => (await runTool(first.tasks, sessionId, 'proc.output', { process_id: started.process_id! })).output === 'up\n', 20_000);
    const hostPids = backgroundHostPids(first, sessionId);
    assert.ok(hostPids.length > 0);
    await stopHard(first);
    await waitFor(() => hostPids.every((pid) => !isAlive(pid)), 10_000);

    const second = await startOne();
    assert.equal((await runTool(second.tasks, sessionId, 'proc.list', {})).processes_json, '[]');
    assert.equal((await runTool(second.tasks, sessionId, 'run.shell', { command: 'echo still here' })).stdout, 'still here\n');
  }));

test('proc.output follow sends a prompt that ends no line, as a terminal shows it', async () => {
  const sessionId = await session();
  const { process_id } = await start(sessionId, 'printf "name? "; read name; echo "hello $name"');
  const follow = new AbortController();
  const seen: string[] = [];
  const following = (async () => {
    for await (const message of worker.tasks.executeTask(
      { sessionId, toolName: 'proc.output', arguments: { process_id: process_id!, follow: 'true' } },
      { signal: follow.signal },
    )) {
      if (message.payload?.$case === 'log') seen.push(message.payload.value.message);
    }
  })().catch(() => undefined);
  await waitFor(() => seen.join('') === 'name? ', 10_000);
  await runTool(worker.tasks, sessionId, 'proc.stdin', { process_id: process_id!, data: 'ada\n' });
  await following;
  assert.equal(seen.join(''), 'name? hello ada\n');
  follow.abort();
  await worker.sessions.destroySession({ sessionId });
});

/** This worker process's relay socket directories in /tmp, and the processes running a relay on them. */
const relayDirectories = (workerPid: number) => readdirSync(tmpdir()).filter((n) => n.startsWith(`codegen-ports-${workerPid}-`));
function relayProcesses(directories: string[]): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return directories.some((d) => cmdline.includes(d));
      } catch {
        return false;
      }
    })
    .map(Number);
}

// Found by an attack (a helper session): the relay outlived a killed worker, and its socket directory in /tmp stayed.
test('a killed worker leaves no port relay; the next start sweeps its socket directory', () =>
  onOneDataDirectory(async (startOne) => {
    const first = await startOne();
    const firstPid = first.process.pid!;
    const { sessionId } = await first.sessions.createSession({ workspaceId: 'relay-restart' });
    const { url } = await runTool(first.tasks, sessionId, 'port.url', { port: '8000' });
    assert.equal((await fetch(url!)).status, 502, 'nothing listens: the relay started, and answered');
    const directories = relayDirectories(firstPid);
    const relays = relayProcesses(directories);
    assert.equal(directories.length, 1);
    assert.equal(relays.length, 1);
    first.process.kill('SIGKILL');
    await new Promise((resolve) => first.process.once('exit', resolve));
    await waitFor(() => relays.every((pid) => !isAlive(pid)), 10_000);
    const second = await startOne();
    assert.deepEqual(relayDirectories(firstPid), [], 'swept at the next start');
    const { url: again } = await runTool(second.tasks, sessionId, 'port.url', { port: '8000' });
    assert.equal((await fetch(again!)).status, 502, 'the adopted session gets a relay of its own');
  }));

// Found by an attack (a helper session): a character split between two reads came back as two U+FFFD.
test('proc.output read again and again from its next offset gives whole characters, one split across writes too', async () => {
  const sessionId = await session();
  const { process_id } = await start(sessionId, "printf 'caf\\303'; read go; printf '\\251\\n'");
  const first = await printed(sessionId, process_id!, 'caf');
  assert.equal(first.output, 'caf', 'the half character is left for later');
  await runTool(worker.tasks, sessionId, 'proc.stdin', { process_id: process_id!, data: 'go\n' });
  await waitFor(async () => (await outputOf(sessionId, process_id!, Number(first.next))).output === 'é\n', 10_000);
  // From an offset in the middle of a character: the rest of it is skipped, not garbled.
  assert.equal((await outputOf(sessionId, process_id!, 4)).output, '\n');
  await worker.sessions.destroySession({ sessionId });
});

// A server that holds connections asking /hold open (printing `held` for each) and answers others.
const HOLDING_SERVER = String.raw`
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8100))
s.listen(128)
print("listening", flush=True)
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(4096)
        if not d:
            c.close()
            return
        data += d
    if data.startswith(b"GET /hold"):
        print("held", flush=True)
        while c.recv(4096):
            pass
    else:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/** Sends a GET for `path` below a port URL on a connection of its own; resolves the socket and, once it closes, its answer's status line (empty when none came). */
function rawGet(url: string, path: string, giveUpMs = 0): { socket: ReturnType<typeof connect>; status: Promise<string> } {
  const { hostname, port, pathname } = new URL(url);
  const socket = connect(Number(port), hostname);
  if (giveUpMs > 0) socket.setTimeout(giveUpMs, () => socket.destroy());
  socket.write(`GET ${pathname}${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  const status = new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('close', () => resolve(got.split('\r\n')[0]!));
    socket.on('error', () => undefined);
  });
  return { socket, status };
}

test("a session's port URLs carry at most 32 connections at once; the 33rd is 502, and a freed slot serves again", async () => {
  const sessionId = await session();
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'hold.py', contents: HOLDING_SERVER });
  const server = await start(sessionId, 'exec python3 hold.py');
  await printed(sessionId, server.process_id!, 'listening');
  const { url } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8100' });
  const held = Array.from({ length: 32 }, () => rawGet(url!, 'hold'));
  const heldCount = async () => (await outputOf(sessionId, server.process_id!)).output!.split('held').length - 1;
  const answered: string[] = [];
  for (const h of held) void h.status.then((line) => answered.push(line));
  // Counted by proc.output calls: the session is ACTIVE now and then, and its ports are reached all the same.
  await waitFor(async () => (await heldCount()) === 32 || answered.length > 0, 20_000);
  assert.deepEqual(answered, [], 'each of the 32 reached the server and waits there');
  // Past the cap: refused at once, not queued. Many at once: each closed by the relay as the worker
  // writes to it (a race that once crashed the worker with an unheard EPIPE).
  const extras = await Promise.all(Array.from({ length: 24 }, () => rawGet(url!, 'hold', 10_000).status));
  assert.deepEqual(
    extras.filter((line) => !/ 502 /.test(line)),
    [],
    'every one past the cap is 502',
  );
  assert.equal(await heldCount(), 32);
  held[0]!.socket.destroy();
  await waitFor(async () => (await fetch(`${url}ok`)).status === 200, 10_000);

  // While a task runs (the session ACTIVE), its servers are reached.
  for await (const message of worker.tasks.executeTask({ sessionId, toolName: 'run.shell', arguments: { command: 'echo started; sleep 1' } })) {
    if (message.payload?.$case !== 'log') continue;
    assert.equal((await worker.sessions.getSessionStatus({ sessionId })).state, SessionState.SESSION_STATE_ACTIVE);
    const during = await fetch(`${url}ok`);
    assert.equal(`${during.status} ${await during.text()}`, '200 ok');
  }
  for (const h of held) h.socket.destroy();
  await worker.sessions.destroySession({ sessionId });
});
