import assert from 'node:assert/strict';
import { CallTurns } from '../../src/tasks/callTurns.js';
import { PayloadBudget } from '../../src/sessions/payloadBudget.js';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { LogLevel, SessionState, TaskStatus } from '../../gen/codegen/v1/common.js';
import { WorkerError } from '../../src/errors.js';
import type { RunOptions, SandboxedResult } from '../../src/sandbox/process/processSpec.js';
import { fakeSandbox, fakeTaskSession, fakeTaskSessions } from '../helpers/fakeSessions.js';
import { newTaskId, runTask, type TaskInput, type TaskRunnerDeps } from '../../src/tasks/runTask.js';
import type { TaskEvent } from '../../src/tools/taskEvents.js';
import { TaskRegistry } from '../../src/sessions/taskRegistry.js';

// The task runner against a stand-in session whose sandbox runs no process: its `runCode` is given
// per test. The registry, the tools' parsing, the event queue and the runner are the real ones.

type RunPython = (code: string, options: RunOptions) => Promise<SandboxedResult>;

function result(exitCode: number, stdout = '', over: Partial<SandboxedResult> = {}): SandboxedResult {
  return {
    exitCode,
    stdout: { text: stdout, truncated: false },
    stderr: { text: '', truncated: false },
    outputLimitExceeded: false,
    killedBy: undefined,
    ...over,
  };
}

function harness(
  runPython: RunPython = async () => result(0),
  over: { state?: SessionState; accepting?: boolean; sessionTimeout?: number; maxTimeout?: number } = {},
) {
  const calls: string[] = [];
  const logged: Record<string, unknown>[] = [];
  const tasks = new TaskRegistry('session-1', 10);
  const session = fakeTaskSession({
    state: over.state ?? SessionState.SESSION_STATE_READY,
    config: { language: 'python', limits: { timeoutSeconds: over.sessionTimeout ?? 0 } },
    tasks,
    touch: () => void calls.push('touch'),
    recordTask: async () => void calls.push('recordTask'),
    recordOutcome: (_task, status) => void calls.push(`recordOutcome ${TaskStatus[status]}`),
    logger: {
      isDebugEnabled: () => false,
      isLevelEnabled: () => false,
      debug: () => undefined,
      log: () => undefined,
      error: (_m: string, meta: Record<string, unknown>) => void logged.push(meta),
    },
    sandbox: fakeSandbox({
      runCode: (code: string, options: RunOptions) => {
        calls.push('runPython');
        return runPython(code, options);
      },
    }),
  });
  const pool = fakeTaskSessions([session], over.accepting ?? true);
  const deps: TaskRunnerDeps = {
    pool,
    limits: { maxOutputBytes: 1024, maxMessageBytes: 1 << 20 },
    turns: new CallTurns({ perSession: 1, holdMs: 50, recentMs: 100 }),
    maxTimeoutSeconds: over.maxTimeout ?? 300,
    payloads: new PayloadBudget(1 << 30),
  };
  return { deps, session, tasks, calls, logged };
}

async function run(deps: TaskRunnerDeps, input: Partial<TaskInput>, signal = new AbortController().signal): Promise<{ events: TaskEvent[]; error: unknown }> {
  const events: TaskEvent[] = [];
  try {
    for await (const event of runTask(deps, { taskId: 't1', sessionId: 'session-1', toolName: 'echo', arguments: {}, ...input }, signal, (e) => e))
      events.push(event);
    return { events, error: undefined };
  } catch (error) {
    return { events, error };
  }
}

const code = (error: unknown) => (error instanceof WorkerError ? Status[error.code] : `not a WorkerError: ${String(error)}`);

test('echo ends in one SUCCESS result carrying its outputs; the task is recorded and the session touched', async () => {
  const { deps, tasks, calls } = harness();
  const { events, error } = await run(deps, { toolName: 'echo', arguments: { message: 'hi' } });
  assert.equal(error, undefined);
  assert.deepEqual(events, [{ kind: 'result', status: TaskStatus.STATUS_SUCCESS, outputs: { message: 'hi' }, exitCode: 0, error: '' }]);
  assert.equal(tasks.get('t1')?.status, TaskStatus.STATUS_SUCCESS);
  assert.ok(calls.includes('touch'));
  assert.ok(!calls.includes('recordTask'), 'a tool that starts no process is not persisted before it runs');
});

test('how a task ended is on disk before its result is yielded, for a success and a failure alike', async () => {
  for (const [exitCode, status] of [
    [0, 'STATUS_SUCCESS'],
    [3, 'STATUS_FAILURE'],
  ] as const) {
    const { deps, calls } = harness(async () => result(exitCode));
    const seen: string[][] = [];
    for await (const event of runTask(
      deps,
      { taskId: 't1', sessionId: 'session-1', toolName: 'run.python', arguments: { code: 'x' } },
      new AbortController().signal,
      (e) => e,
    ))
      if (event.kind === 'result') seen.push([...calls]);
    assert.equal(seen.length, 1);
    assert.ok(seen[0]!.includes(`recordOutcome ${status}`), `recorded before the result: ${seen[0]!.join(',')}`);
  }
});

test('requests that cannot run are refused before any task is recorded', async () => {
  const cases: [ReturnType<typeof harness>, Partial<TaskInput>, string, RegExp][] = [
    [harness(), { sessionId: 'session-x' }, 'NOT_FOUND', /session not found/],
    [harness(undefined, { accepting: false }), {}, 'UNAVAILABLE', /shutting down/],
    [
      harness(undefined, { state: SessionState.SESSION_STATE_TERMINATING }),
      {},
      'FAILED_PRECONDITION',
      /cannot run a task while session "session-1" is TERMINATING/,
    ],
    [
      harness(),
      { toolName: 'rm.rf' },
      'INVALID_ARGUMENT',
      /unknown tool "rm\.rf"; this python session offers echo, fs\.write, fs\.read, fs\.list, run\.python, run\.shell, pkg\.install/,
    ],
    [harness(), { toolName: 'echo', arguments: {} }, 'INVALID_ARGUMENT', /echo requires 'message'/],
    [harness(), { toolName: 'echo', arguments: { message: 'x', extra: 'y' } }, 'INVALID_ARGUMENT', /echo does not take 'extra'/],
    [
      harness(),
      { arguments: { message: 'x' }, constraints: { timeoutSeconds: -1, maxMemoryMb: 0, maxCpuPercent: 0 } },
      'INVALID_ARGUMENT',
      /constraints\.timeout_seconds must not be negative/,
    ],
    [
      harness(),
      { arguments: { message: 'x' }, constraints: { timeoutSeconds: 0, maxMemoryMb: -5, maxCpuPercent: 0 } },
      'INVALID_ARGUMENT',
      /constraints\.max_memory_mb must not be negative/,
    ],
  ];
  for (const [h, input, expected, pattern] of cases) {
    const { events, error } = await run(h.deps, input);
    assert.equal(code(error), expected, pattern.source);
    assert.match((error as WorkerError).details, pattern);
    assert.deepEqual(events, []);
    assert.equal(h.tasks.get('t1'), undefined, 'nothing recorded');
  }
});

test('a task id already running in the session is refused with ALREADY_EXISTS', async () => {
  const { deps, tasks } = harness();
  tasks.start('t1', 'run.python');
  const { error } = await run(deps, { arguments: { message: 'x' } });
  assert.equal(code(error), 'ALREADY_EXISTS');
});

test('run.python streams progress, each output line as a log (stderr at ERROR) and then the result, and is on disk before it starts', async () => {
  const { deps, calls } = harness(async (source, options) => {
    assert.equal(source, 'print(1)');
    await options.onOutput('stdout', 'one');
    await options.onOutput('stderr', 'warning');
    return result(0, 'one\n');
  });
  const { events, error } = await run(deps, { toolName: 'run.python', arguments: { code: 'print(1)' } });
  assert.equal(error, undefined);
  assert.deepEqual(
    events.map((e) => e.kind),
    ['progress', 'log', 'log', 'progress', 'result'],
  );
  const logs = events.filter((e): e is Extract<TaskEvent, { kind: 'log' }> => e.kind === 'log');
  assert.deepEqual(
    logs.map((l) => [l.source, l.level, l.message]),
    [
      ['stdout', LogLevel.LOG_LEVEL_INFO, 'one'],
      ['stderr', LogLevel.LOG_LEVEL_ERROR, 'warning'],
    ],
  );
  const final = events.at(-1) as Extract<TaskEvent, { kind: 'result' }>;
  assert.equal(final.status, TaskStatus.STATUS_SUCCESS);
  assert.equal(final.outputs.stdout, 'one\n');
  assert.equal(final.outputs.exit_code, '0');
  assert.ok(calls.indexOf('recordTask') >= 0 && calls.indexOf('recordTask') < calls.indexOf('runPython'), calls.join(','));
});

test('code that exits non-zero, or is stopped by a limit, is a FAILURE result that says why (the call itself succeeds)', async () => {
  const failing = await run(harness(async () => result(1)).deps, { toolName: 'run.python', arguments: { code: 'x' } });
  assert.equal(failing.error, undefined);
  const last = failing.events.at(-1) as Extract<TaskEvent, { kind: 'result' }>;
  assert.deepEqual([last.status, last.exitCode, last.error], [TaskStatus.STATUS_FAILURE, 1, 'python exited with code 1']);

  const killed = await run(harness(async () => result(137, '', { killedBy: 'memory' })).deps, { toolName: 'run.python', arguments: { code: 'x' } });
  const outcome = killed.events.at(-1) as Extract<TaskEvent, { kind: 'result' }>;
  assert.equal(outcome.status, TaskStatus.STATUS_FAILURE);
  assert.equal(outcome.outputs.killed_by, 'memory');
  assert.equal(outcome.error, 'python was stopped by its memory limit (exit code 137)');
});

/** A sandbox run that lasts until the task is aborted, then ends as killed. */
const untilAborted: RunPython = (_code, options) =>
  new Promise((resolve) => {
    if (options.signal.aborted) return resolve(result(137));
    options.signal.addEventListener('abort', () => resolve(result(137)), { once: true });
  });

test('a task past its timeout yields a TIMEOUT result (killed_by=timeout) and ends DEADLINE_EXCEEDED', async () => {
  const { deps, tasks } = harness(untilAborted, { maxTimeout: 0.05 });
  const { events, error } = await run(deps, { toolName: 'run.python', arguments: { code: 'while True: pass' } });
  assert.equal(code(error), 'DEADLINE_EXCEEDED');
  const last = events.at(-1) as Extract<TaskEvent, { kind: 'result' }>;
  assert.equal(last.status, TaskStatus.STATUS_TIMEOUT);
  assert.equal(last.outputs.killed_by, 'timeout');
  assert.equal(tasks.get('t1')?.status, TaskStatus.STATUS_TIMEOUT);
});

test("the timeout is the smallest positive of the task's, the session's and the worker's", async () => {
  const cases: [number, number, number, string][] = [
    [0.04, 0, 300, '0.04'],
    [0, 0.03, 300, '0.03'],
    [0.5, 0.02, 0.05, '0.02'],
    [0, 0, 0.01, '0.01'],
  ];
  for (const [task, session, worker, expected] of cases) {
    const { deps } = harness(untilAborted, { sessionTimeout: session, maxTimeout: worker });
    const { error } = await run(deps, {
      toolName: 'run.python',
      arguments: { code: 'x' },
      constraints: { timeoutSeconds: task, maxMemoryMb: 0, maxCpuPercent: 0 },
    });
    assert.equal(code(error), 'DEADLINE_EXCEEDED');
    assert.match((error as WorkerError).details, new RegExp(`its ${expected.replace('.', '\\.')} s timeout`), `${task}/${session}/${worker}`);
  }
});

test('CancelTask ends a running task with a CANCELLED result and status', async () => {
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const { deps, tasks } = harness((c, options) => {
    started();
    return untilAborted(c, options);
  });
  const outcome = run(deps, { toolName: 'run.python', arguments: { code: 'x' } });
  await running;
  assert.equal(tasks.cancel('t1'), 'canceled');
  const { events, error } = await outcome;
  assert.equal(code(error), 'CANCELLED');
  assert.match((error as WorkerError).details, /cancelled by CancelTask/);
  assert.equal((events.at(-1) as Extract<TaskEvent, { kind: 'result' }>).status, TaskStatus.STATUS_CANCELLED);
  assert.equal(tasks.get('t1')?.status, TaskStatus.STATUS_CANCELLED);
  assert.equal(tasks.cancel('t1'), 'already_finished');
});

test('a client that goes away mid-stream stops the tool, and the task is recorded CANCELLED', async () => {
  let aborted = false;
  const { deps, tasks } = harness(async (c, options) => {
    await options.onOutput('stdout', 'first');
    const r = await untilAborted(c, options);
    aborted = options.signal.aborted;
    return r;
  });
  const stream = runTask(
    deps,
    { taskId: 't1', sessionId: 'session-1', toolName: 'run.python', arguments: { code: 'x' } },
    new AbortController().signal,
    (e) => e,
  );
  for await (const event of stream) if (event.kind === 'log') break; // the client leaves
  assert.equal(aborted, true, 'the run saw the abort');
  assert.equal(tasks.get('t1')?.status, TaskStatus.STATUS_CANCELLED);
  assert.equal(tasks.activeCount, 0);
});

test('an unexpected failure in a tool is INTERNAL with a reference, its message only in the log', async () => {
  const { deps, tasks, logged } = harness(async () => {
    throw new Error("ENOENT: no such file, open '/srv/worker/sessions/x/env/bin/python'");
  });
  const { error } = await run(deps, { toolName: 'run.python', arguments: { code: 'x' } });
  assert.equal(code(error), 'INTERNAL');
  const ref = /reference ([0-9a-f]{8})/.exec((error as WorkerError).details)?.[1];
  assert.ok(ref);
  assert.ok(!(error as WorkerError).details.includes('/srv'));
  assert.equal(logged[0]?.ref, ref);
  assert.equal(tasks.get('t1')?.status, TaskStatus.STATUS_FAILURE);
});

test('task ids the worker makes are unguessable and URL-safe', () => {
  const id = newTaskId();
  assert.match(id, /^task-[A-Za-z0-9_-]{16}$/);
  assert.notEqual(newTaskId(), id);
});
