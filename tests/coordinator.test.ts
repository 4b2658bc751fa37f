// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createServer, Status, type Server } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { WorkerLifecycleDefinition, type DeregisterRequest, type HeartbeatRequest, type RegisterRequest } from '../gen/codegen/v1/worker_lifecycle.js';
import { runTask, statusOf, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

/** A coordinator played by a real WorkerLifecycle server, remembering what it was sent. */
class FakeCoordinator {
  registers: (RegisterRequest & { at: number })[] = [];
  heartbeats: (HeartbeatRequest & { at: number })[] = [];
  deregisters: DeregisterRequest[] = [];
  acknowledge = true;
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    const known = new Set<string>();
    this.server = createServer();
    this.server.add(WorkerLifecycleDefinition, {
      registerWorker: async (request) => {
        this.registers.push({ ...request, at: Date.now() });
        known.add(request.workerId);
        return { success: true, message: 'welcome', heartbeatIntervalSeconds: 1 };
      },
      heartbeat: async (request) => {
        this.heartbeats.push({ ...request, at: Date.now() });
        // A coordinator that restarted does not know the worker until it registers again.
        return { acknowledged: this.acknowledge && known.has(request.workerId), message: '' };
      },
      deregisterWorker: async (request) => {
        this.deregisters.push(request);
        return { success: true, message: 'bye' };
      },
    });
    this.port = await this.server.listen(`127.0.0.1:${port}`);
  }

  async stop(): Promise<void> {
    this.server?.forceShutdown();
  }
}

async function withCoordinator(env: Record<string, string>, fn: (coordinator: FakeCoordinator, worker: RunningWorker) => Promise<void>): Promise<void> {
  const coordinator = new FakeCoordinator();
  await coordinator.start();
  const worker = await startWorker({
    env: { COORDINATOR_ADDR: `127.0.0.1:${coordinator.port}`, WORKER_ID: 'worker-under-test', WORKER_ADVERTISE_ADDR: 'worker.example:50052', ...env },
  });
  try {
    await fn(coordinator, worker);
  } finally {
    await worker.stop();
    await coordinator.stop();
  }
}

// Each test has a worker and a coordinator of its own, and spends its time waiting on heartbeats
// and grace times: they run at once (but the one that takes a port back).
describe('a worker and its coordinator', { concurrency: true }, () => {
  test('RegisterWorker carries the worker id, capacity, metadata and address; heartbeats 1 s apart carry the live session ids', async () => {
    await withCoordinator({ WORKER_MAX_SESSIONS: '7', WORKER_LANGUAGES: 'python' }, async (coordinator, worker) => {
      await waitFor(() => coordinator.registers.length === 1);
      const registration = coordinator.registers[0];
      assert.ok(registration);
      assert.equal(registration.workerId, 'worker-under-test');
      assert.equal(registration.maxSessions, 7);
      assert.equal(registration.grpcAddress, 'worker.example:50052');
      assert.equal(registration.metadata.version, '0.1.0');
      assert.equal(registration.metadata.languages, 'python');
      assert.match(registration.metadata.python_version ?? '', /^3\.\d+\.\d+$/);
      assert.equal(
        registration.metadata.tools,
        'echo,fs.write,fs.read,fs.list,run.python,run.shell,pkg.install,proc.list,proc.output,proc.stdin,proc.signal,proc.resize,port.url',
      );
      assert.equal(registration.metadata.network_modes, 'none,allow_list,open');
      assert.ok(registration.metadata.hostname);

      const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
      await waitFor(() => coordinator.heartbeats.some((h) => h.sessionIds.includes(sessionId)), 5000);
      const withSession = coordinator.heartbeats.find((h) => h.sessionIds.includes(sessionId))!;
      assert.equal(withSession.activeSessions, 1);
      await waitFor(() => coordinator.heartbeats.length >= 4, 6000);
      const gaps = coordinator.heartbeats.slice(1).map((h, i) => h.at - coordinator.heartbeats[i]!.at);
      assert.ok(
        gaps.every((g) => g > 700 && g < 1600),
        `heartbeat gaps ${gaps.join(', ')} ms`,
      );
      await worker.sessions.destroySession({ sessionId });
      await waitFor(() => coordinator.heartbeats.at(-1)!.sessionIds.length === 0, 3000);
    });
  });

  test('a heartbeat answered acknowledged: false makes the worker register again', async () => {
    await withCoordinator({}, async (coordinator) => {
      await waitFor(() => coordinator.heartbeats.length >= 1, 5000);
      coordinator.acknowledge = false;
      await waitFor(() => coordinator.registers.length >= 2, 5000);
      coordinator.acknowledge = true;
    });
  });

  test('SIGTERM: new work is refused UNAVAILABLE, DeregisterWorker arrives, a running 2 s task completes, exit 0', async () => {
    await withCoordinator({ WORKER_SHUTDOWN_GRACE_SECONDS: '10' }, async (coordinator, worker) => {
      await waitFor(() => coordinator.registers.length === 1);
      const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
      const running = runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import time\ntime.sleep(2)\nprint("finished")' } });
      await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
      const exited = new Promise<number | null>((resolve) => worker.process.once('exit', (code) => resolve(code)));
      worker.process.kill('SIGTERM');
      await waitFor(() => coordinator.deregisters.length === 1, 5000);
      assert.deepEqual(coordinator.deregisters[0], { workerId: 'worker-under-test', sessionIds: [sessionId] });
      assert.equal(await statusOf(worker.sessions.createSession({ workspaceId: 'late' })), Status.UNAVAILABLE);
      assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'echo', arguments: { message: 'late' } })).code, Status.UNAVAILABLE);
      const run = await running;
      assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
      assert.equal(run.result?.outputs.stdout, 'finished\n');
      assert.equal(await exited, 0);
    });
  });

  test('a task still running after the grace time is cancelled, and the worker exits 0', async () => {
    await withCoordinator({ WORKER_SHUTDOWN_GRACE_SECONDS: '1' }, async (coordinator, worker) => {
      const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
      const running = runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'import time; time.sleep(60)' } });
      await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks === 1);
      const exited = new Promise<number | null>((resolve) => worker.process.once('exit', (code) => resolve(code)));
      const signalledAt = Date.now();
      worker.process.kill('SIGTERM');
      const run = await running;
      assert.equal(run.result?.status, TaskStatus.STATUS_CANCELLED);
      assert.equal(run.code, Status.CANCELLED);
      assert.equal(await exited, 0);
      assert.ok(Date.now() - signalledAt < 8000);
      assert.equal(coordinator.deregisters.length, 1);
    });
  });
});

// Alone, after the others: it listens again on the port it gave up, which another test's
// connection could meanwhile hold.
test('a coordinator that goes away and comes back: the worker keeps serving and registers again within two intervals', async () => {
  await withCoordinator({}, async (coordinator, worker) => {
    await waitFor(() => coordinator.registers.length === 1);
    const port = coordinator.port;
    await coordinator.stop();
    // Gone for two heartbeats: the worker has noticed, and serves on.
    await waitFor(() => worker.logs.some((l) => l.message === 'heartbeat failed' && Number(l.consecutive_failures) >= 2), 10_000);
    assert.equal(await statusOf(worker.sessions.getCapacity({})), Status.OK, 'the worker keeps serving');
    const back = new FakeCoordinator();
    await back.start(port);
    const restartedAt = Date.now();
    try {
      await waitFor(() => back.registers.length >= 1, 5000);
      assert.ok(back.registers[0]!.at - restartedAt <= 2500, `registered ${back.registers[0]!.at - restartedAt} ms after the coordinator came back`);
    } finally {
      await back.stop();
    }
  });
});
