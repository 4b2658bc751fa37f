// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { MAX_TASK_GROUPS } from '../../src/sandbox/confine/taskGroups.js';
import { runTask, waitFor, type TaskRun } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// A session's task groups are kernel objects of the host (a memory cgroup id each, 65,535 on
// v1): however many calls one session makes at once, it holds a bounded number of them, and
// once its calls end, those it keeps for later calls hold nothing of them.

const CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'];

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_SESSIONS: '4', WORKER_SPARE_SESSIONS: '1' } });
});

after(async () => worker?.stop());

/** Where the worker keeps `sessionId`'s cgroup in each v1 controller (or v2's one tree). */
function sessionGroupDirs(sessionId: string): string[] {
  const pid = worker.process.pid!;
  const own = new Map(
    readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .flatMap(([, controllers, path]) => (controllers ?? '').split(',').map((c) => [c, path ?? '/'] as const)),
  );
  const v1 = CONTROLLERS.filter((c) => own.has(c));
  if (v1.length === 0) return [`/sys/fs/cgroup/codegen-${pid}/${sessionId}`];
  return v1.map((c) => `/sys/fs/cgroup/${c}${own.get(c) === '/' ? '' : own.get(c)}/codegen-${pid}/${sessionId}`);
}

/** The task groups the session holds now, per controller directory, counted in cgroupfs. */
function taskGroups(sessionId: string): Record<string, number> {
  return Object.fromEntries(
    sessionGroupDirs(sessionId).map((dir) => [
      dir.replace(/^\/sys\/fs\/cgroup\//, '').split('/')[0]!,
      readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).length,
    ]),
  );
}

const most = (counts: Record<string, number>) => Math.max(...Object.values(counts));

/** Whether a process is the warm interpreter's child waiting for its call (placed in a group ahead of it). */
function waitingForItsCall(pid: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'codegen-ahead';
  } catch {
    return false;
  }
}

/** The processes in the session's task groups (but a child waiting for its call), in every controller, as `group: pids`. */
function processesInTaskGroups(sessionId: string): string[] {
  return sessionGroupDirs(sessionId).flatMap((dir) =>
    readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => {
        const pids = readFileSync(`${dir}/${e.name}/cgroup.procs`, 'utf8')
          .split('\n')
          .filter((p) => p !== '' && !waitingForItsCall(p));
        return `${dir}/${e.name}: ${pids.join(' ')}`;
      })
      .filter((line) => !line.endsWith(': ')),
  );
}

/** A call that ends however it ends (the test looks at how), aborted by the client when `signal` fires. */
function call(
  sessionId: string,
  toolName: string,
  args: Record<string, string>,
  extra: { taskId?: string; timeoutSeconds?: number; signal?: AbortSignal } = {},
) {
  return runTask(
    worker.tasks,
    { sessionId, toolName, taskId: extra.taskId, arguments: args, constraints: extra.timeoutSeconds ? { timeoutSeconds: extra.timeoutSeconds } : undefined },
    extra.signal,
  ).catch((err: Error) => ({ code: err.name === 'AbortError' ? Status.CANCELLED : Status.UNKNOWN, error: err }) as unknown as TaskRun);
}

/** One burst of `n` calls at once: quick ones, shells, timeouts, CancelTasks and client aborts. */
async function burst(sessionId: string, n: number, tag: string): Promise<TaskRun[]> {
  const aborts: AbortController[] = [];
  const cancelIds: string[] = [];
  const calls = Array.from({ length: n }, (_, i) => {
    switch (i % 5) {
      case 0:
        return call(sessionId, 'run.python', { code: 'print(1)' });
      case 1:
        return call(sessionId, 'run.shell', { command: 'echo $$' });
      case 2:
        return call(sessionId, 'run.python', { code: 'import time; time.sleep(30)' }, { timeoutSeconds: 1 });
      case 3:
        cancelIds.push(`${tag}-${i}`);
        return call(sessionId, 'run.shell', { command: 'sleep 30' }, { taskId: `${tag}-${i}` });
      default: {
        const abort = new AbortController();
        aborts.push(abort);
        return call(sessionId, 'run.python', { code: 'import time; time.sleep(30)' }, { signal: abort.signal });
      }
    }
  });
  // The cancels and aborts land while their calls are anywhere: arriving, waiting, running.
  await waitFor(async () => (await worker.sessions.getSessionStatus({ sessionId })).activeTasks > 0);
  for (const abort of aborts) abort.abort();
  // CancelTask answers not_found for a call not registered yet: asked again until each was cancelled or had ended.
  const pending = new Set(cancelIds);
  await waitFor(async () => {
    for (const taskId of pending) {
      const { state } = await worker.tasks.cancelTask({ sessionId, taskId });
      if (state !== 'not_found') pending.delete(taskId);
    }
    return pending.size === 0;
  }, 60_000);
  return Promise.all(calls);
}

/** Runs `body` with a new session, destroyed afterwards whatever happened (its disk is a mount). */
async function withSession(workspaceId: string, body: (sessionId: string) => Promise<void>): Promise<void> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId });
  try {
    await body(sessionId);
  } finally {
    await worker.sessions.destroySession({ sessionId });
  }
}

test('bursts of concurrent calls, cancels and timeouts leave the session at most its bound of task groups, all empty', () =>
  withSession('bursts', async (sessionId) => {
    for (let round = 0; round < 2; round++) {
      const runs = await burst(sessionId, 40, `b${round}`);
      const internal = runs.filter((r) => r.code === Status.INTERNAL || r.code === Status.UNKNOWN);
      assert.deepEqual(
        internal.map((r) => r.error?.message),
        [],
        'no call of the burst failed unexpectedly',
      );
      for (const status of [TaskStatus.STATUS_SUCCESS, TaskStatus.STATUS_TIMEOUT, TaskStatus.STATUS_CANCELLED]) {
        assert.ok(
          runs.some((r) => r.result?.status === status),
          `some calls of the burst ended ${TaskStatus[status]}`,
        );
      }
    }
    // Groups are kept for later calls, never more than the bound and the one made ahead; a
    // call the client gave up on may still be ending (its group is emptied just after).
    const left = taskGroups(sessionId);
    assert.ok(most(left) <= MAX_TASK_GROUPS + 1, `task groups left after the bursts: ${JSON.stringify(left)}`);
    await waitFor(() => processesInTaskGroups(sessionId).length === 0, 20_000).catch(() => undefined); // the assertion below says what was left
    assert.deepEqual(processesInTaskGroups(sessionId), [], 'nothing of an ended call lives on in a kept group');
    // And the session still works.
    const after = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'print(42)' } });
    assert.equal(after.result?.outputs.stdout, '42\n');
  }));

test(`a session holds at most ${MAX_TASK_GROUPS} task groups at once: the calls beyond wait for one, and all succeed`, () =>
  withSession('bound', async (sessionId) => {
    const n = MAX_TASK_GROUPS * 2;
    // Every call waits until the test opens the gate (a file in the workspace): so every group the
    // worker would make for them is there at once.
    let done = false;
    let seen = 0;
    const calls = Promise.all(
      Array.from({ length: n }, () =>
        runTask(worker.tasks, {
          sessionId,
          toolName: 'run.python',
          arguments: { code: `import os, time\nwhile not os.path.exists('/workspace/open'): time.sleep(0.05)\nprint('ran')` },
        }),
      ),
    ).finally(() => (done = true));
    // Until as many calls run as may: then the gate opens and the rest follow.
    await waitFor(() => {
      seen = Math.max(seen, most(taskGroups(sessionId)));
      return seen >= MAX_TASK_GROUPS || done;
    }, 60_000);
    await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'open', contents: '' } });
    await waitFor(() => {
      seen = Math.max(seen, most(taskGroups(sessionId)));
      return done;
    }, 120_000);
    const runs = await calls;
    assert.ok(seen <= MAX_TASK_GROUPS + 1, `${seen} task groups at once (the bound and the one made ahead: ${MAX_TASK_GROUPS + 1})`);
    assert.deepEqual(
      runs.filter((r) => r.result?.outputs.stdout !== 'ran\n').map((r) => `${Status[r.code]} ${r.error?.details ?? ''} ${JSON.stringify(r.result?.outputs)}`),
      [],
      'every call ran',
    );
  }));
