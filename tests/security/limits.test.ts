import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { runTask, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

let worker: RunningWorker;
let bystander: string;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_TASK_OUTPUT_MB: '8', WORKER_MAX_PROCESSES: '64', WORKER_MAX_SESSIONS: '20' } });
  bystander = (await worker.sessions.createSession({ workspaceId: 'bystander' })).sessionId;
});

after(async () => worker?.stop());

/** The worker still serves another session, promptly and correctly. */
async function workerUnaffected(): Promise<void> {
  assert.equal(worker.process.exitCode, null);
  assert.equal((await runTool(worker.tasks, bystander, 'run.python', { code: 'print(6 * 7)' })).stdout, '42\n');
}

async function session(limits: { maxMemoryMb?: number; maxCpuPercent?: number; maxDiskMb?: number } = {}) {
  return (await worker.sessions.createSession({ workspaceId: 'limited', config: { limits } })).sessionId;
}

test('max_memory_mb 128 and code allocating 512 MB: killed, killed_by memory, worker unaffected', async () => {
  const sessionId = await session({ maxMemoryMb: 128 });
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'x = bytearray(512 * 1024 * 1024)\nprint("allocated")' } });
  assert.equal(run.code, Status.OK);
  assert.equal(run.result?.status, TaskStatus.STATUS_FAILURE);
  assert.equal(run.result?.outputs.killed_by, 'memory');
  assert.doesNotMatch(run.result?.outputs.stdout ?? '', /allocated/);
  // Task groups are kept for later calls: the next failure is not blamed on the memory limit.
  const after = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import sys\nsys.exit(3)' } });
  assert.equal(after.result?.exitCode, 3);
  assert.equal(after.result?.outputs.killed_by, undefined, 'a call after an OOM kill is not killed_by memory');
  // A task may narrow it further.
  const big = await session({ maxMemoryMb: 512 });
  const narrowed = await runTask(worker.tasks, {
    sessionId: big,
    toolName: 'run.python',
    arguments: { code: 'x = bytearray(256 * 1024 * 1024)\nprint("allocated")' },
    constraints: { maxMemoryMb: 100 },
  });
  assert.equal(narrowed.result?.outputs.killed_by, 'memory');
  assert.equal((await runTool(worker.tasks, big, 'run.python', { code: 'x = bytearray(256 * 1024 * 1024)\nprint("allocated")' })).stdout, 'allocated\n');
  await workerUnaffected();
});

/** A file of the session's cgroup in the hierarchy holding `controller` (v1), or in the one tree (v2). */
function sessionCgroupFile(sessionId: string, controller: 'cpu' | 'cpuacct', file: string): string {
  const pid = worker.process.pid!;
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.find((l) => new RegExp(`^\\d+:([^:]*,)?${controller}(,[^:]*)?:`).test(l));
  if (v1) {
    const controllers = v1.split(':')[1];
    const base = existsSync(`/sys/fs/cgroup/${controllers}`) ? controllers : controller;
    return readFileSync(`/sys/fs/cgroup/${base}${v1.split(':')[2]!.replace(/\/$/, '')}/codegen-${pid}/${sessionId}/${file}`, 'utf8');
  }
  return readFileSync(`/sys/fs/cgroup/codegen-${pid}/${sessionId}/${file}`, 'utf8');
}

/** The session's cgroup CPU counter, read on the host (v1 cpuacct or v2 cpu.stat). */
function sessionCpuNs(sessionId: string): number {
  const v1 = existsSync('/sys/fs/cgroup/cpuacct') || existsSync('/sys/fs/cgroup/cpu,cpuacct');
  if (v1) return Number(sessionCgroupFile(sessionId, 'cpuacct', 'cpuacct.usage'));
  return Number(/usage_usec (\d+)/.exec(sessionCgroupFile(sessionId, 'cpu', 'cpu.stat'))![1]) * 1000;
}

/** Periods in which the kernel held the session's processes back at its CPU quota. */
const throttledPeriods = (sessionId: string) => Number(/nr_throttled (\d+)/.exec(sessionCgroupFile(sessionId, 'cpu', 'cpu.stat'))![1]);

// At 10 MB the kernel's victim was the session's warm process, not the call's child: exit 137, and no killed_by.
test('a call dying of the memory limit says killed_by memory at every limit size, run.python and run.shell alike', async () => {
  for (const maxMemoryMb of [10, 24, 64]) {
    const sessionId = await session({ maxMemoryMb });
    for (const [toolName, args] of [
      ['run.python', { code: 'b = bytearray(80 << 20)' }],
      ['run.shell', { command: 'python3 -c "b = bytearray(80 << 20)"' }],
    ] as const) {
      const run = await runTask(worker.tasks, { sessionId, toolName, arguments: args });
      assert.equal(run.result?.outputs.killed_by, 'memory', `${toolName} at ${maxMemoryMb} MB: ${JSON.stringify(run.result)}`);
    }
    // (At 10 MB the warm interpreter alone nearly fills the session: even print(1) may not fit.)
    if (maxMemoryMb > 10) assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(1)' })).stdout, '1\n', 'the session goes on');
  }
});

test('max_cpu_percent 20: a 2 s busy loop uses at most 30% of one CPU, measured from the cgroup', async () => {
  const sessionId = await session({ maxCpuPercent: 20 });
  const before = sessionCpuNs(sessionId);
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import time\nt = time.time()\nwhile time.time() - t < 2: pass\nprint("done")' },
  });
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
  const used = (sessionCpuNs(sessionId) - before) / 1e9;
  assert.ok(used <= 0.3 * 2, `used ${used.toFixed(2)} s of CPU in 2 s`);
  assert.ok(used > 0, 'the loop ran');
  // The quota is what held it back: the kernel throttled it (a count other tests' load on the
  // host cannot fake, where comparing with an unlimited loop's share could).
  assert.ok(throttledPeriods(sessionId) > 0, 'throttled at its quota');
  await workerUnaffected();
});

test('a fork bomb is contained by the process limit and ended by the timeout', async () => {
  const sessionId = await session();
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass' },
    constraints: { timeoutSeconds: 4 },
  });
  assert.equal(run.code, Status.DEADLINE_EXCEEDED);
  assert.equal(run.result?.status, TaskStatus.STATUS_TIMEOUT);
  assert.equal(run.result?.outputs.killed_by, 'timeout');
  await workerUnaffected();
  assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print("recovered")' })).stdout, 'recovered\n');
  // Its task group, kept for later calls, counts refused forks from zero again.
  const after = await runTask(worker.tasks, { sessionId, toolName: 'run.shell', arguments: { command: 'exit 3' } });
  assert.equal(after.result?.exitCode, 3);
  assert.equal(after.result?.outputs.killed_by, undefined, 'a call after refused forks is not killed_by pids');
});

test('max_disk_mb: writes past it fail (killed_by disk) and fs.write is refused RESOURCE_EXHAUSTED', async () => {
  const sessionId = await session({ maxDiskMb: 10 });
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'with open("big.bin", "wb") as f:\n    for _ in range(20):\n        f.write(b"x" * 1024 * 1024)' },
  });
  assert.equal(run.result?.status, TaskStatus.STATUS_FAILURE);
  assert.equal(run.result?.outputs.killed_by, 'disk');
  assert.match(run.result?.outputs.stderr ?? '', /No space left on device/);
  const write = await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'more.bin', contents: 'y'.repeat(2 * 1024 * 1024) } });
  assert.equal(write.code, Status.RESOURCE_EXHAUSTED);
  const status = await worker.sessions.getSessionStatus({ sessionId });
  assert.ok((status.usage?.diskBytes ?? 0) <= 10 * 1024 * 1024);
  // Freeing space makes room again.
  await runTool(worker.tasks, sessionId, 'run.python', { code: 'import os; os.remove("big.bin")' });
  assert.equal(
    (await runTool(worker.tasks, sessionId, 'fs.write', { path: 'more.bin', contents: 'y'.repeat(2 * 1024 * 1024) })).bytes_written,
    String(2 * 1024 * 1024),
  );
  await workerUnaffected();
});

test('printing 1 GB: the task is killed at the output cap with killed_by output', async () => {
  const sessionId = await session();
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import sys\nline = "x" * 1023 + "\\n"\nfor _ in range(1024 * 1024):\n    sys.stdout.write(line)' },
  });
  assert.equal(run.result?.status, TaskStatus.STATUS_FAILURE);
  assert.equal(run.result?.outputs.killed_by, 'output');
  assert.equal(run.result?.outputs.stdout_truncated, 'true');
  const streamed = run.logs.reduce((n, l) => n + l.message.length + 1, 0);
  assert.ok(streamed <= 9 * 1024 * 1024, `streamed ${streamed} bytes`);
  await workerUnaffected();
});

test('sleeping past the timeout: TIMEOUT, killed_by timeout', async () => {
  const sessionId = await session();
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import time; time.sleep(30)' },
    constraints: { timeoutSeconds: 1 },
  });
  assert.equal(run.code, Status.DEADLINE_EXCEEDED);
  assert.equal(run.result?.outputs.killed_by, 'timeout');
  await workerUnaffected();
});

test("the host's loopback is out of reach of session code, with the network open (WORKER_ALLOW_NETWORK=true) or not", async () => {
  const server = createServer((s) => s.end('hi'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const code = `import socket\ntry:\n    print(socket.create_connection(("127.0.0.1", ${port}), timeout=3).recv(2).decode())\nexcept OSError as e:\n    print("refused", type(e).__name__)`;
  const open = await startWorker({ env: { WORKER_ALLOW_NETWORK: 'true' } });
  try {
    const { sessionId } = await open.sessions.createSession({ workspaceId: 'net' });
    assert.match((await runTool(open.tasks, sessionId, 'run.python', { code })).stdout ?? '', /^refused/);
  } finally {
    await open.stop();
    server.close();
  }
  const closedSession = await session();
  assert.match((await runTool(worker.tasks, closedSession, 'run.python', { code })).stdout ?? '', /^refused/);
});
