// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { LogLevel, TaskStatus } from '../gen/codegen/v1/common.js';
import { runTask, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;
let sessionId: string;

before(async () => {
  worker = await startWorker({ env: { WORKER_MAX_OUTPUT_BYTES: '1024' } });
  ({ sessionId } = await worker.sessions.createSession({ workspaceId: 'streaming' }));
});

after(async () => worker?.stop());

test('output reaches the client while the process runs: the script waits for a file the client writes on seeing its line', async () => {
  // If lines were delivered only after the process exits, this would never finish.
  const code = 'import os, time\nprint("ready")\nwhile not os.path.exists("go"):\n    time.sleep(0.01)\nprint("went")';
  const seen: string[] = [];
  let result;
  for await (const message of worker.tasks.executeTask({ sessionId, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 20 } })) {
    const payload = message.payload;
    if (payload?.$case === 'log') {
      seen.push(payload.value.message);
      if (payload.value.message === 'ready') await runTool(worker.tasks, sessionId, 'fs.write', { path: 'go', contents: '' });
    }
    if (payload?.$case === 'result') result = payload.value;
  }
  assert.deepEqual(seen, ['ready', 'went']);
  assert.equal(result?.status, TaskStatus.STATUS_SUCCESS);
});

test('a line every 200 ms arrives as a LogEntry each, spread over the run, before the result', async () => {
  const code = 'import time, sys\nfor i in range(5):\n    print(f"line {i}")\n    time.sleep(0.2)\nprint("oops", file=sys.stderr)';
  const arrivals: [string, string, number, LogLevel][] = [];
  let resultAt = 0;
  for await (const message of worker.tasks.executeTask({ sessionId, toolName: 'run.python', arguments: { code } })) {
    const payload = message.payload;
    if (payload?.$case === 'log') arrivals.push([payload.value.source, payload.value.message, Date.now(), payload.value.level]);
    if (payload?.$case === 'result') resultAt = Date.now();
  }
  assert.deepEqual(
    arrivals.map(([source, line]) => `${source}:${line}`),
    ['stdout:line 0', 'stdout:line 1', 'stdout:line 2', 'stdout:line 3', 'stdout:line 4', 'stderr:oops'],
  );
  assert.equal(arrivals[0]![3], LogLevel.LOG_LEVEL_INFO);
  assert.equal(arrivals[5]![3], LogLevel.LOG_LEVEL_ERROR);
  // The first line came about 1 s (five sleeps) before the process ended, not with the result.
  assert.ok(resultAt - arrivals[0]![2] >= 600, `first line arrived only ${resultAt - arrivals[0]![2]} ms before the result`);
  assert.ok(arrivals[4]![2] - arrivals[0]![2] >= 500, 'lines arrived as they were printed, not in one batch');
});

test('progress updates bracket the run; the result is the last message', async () => {
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'print(1)' } });
  assert.deepEqual(
    run.messages.map((m) => m.payload?.$case),
    ['progress', 'log', 'progress', 'result'],
  );
  assert.deepEqual(
    run.progress.map((p) => p.percentComplete),
    [0, 100],
  );
});

test('outputs are capped per stream and say so; the logs still carry every line', async () => {
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'for i in range(500): print(f"{i:09d}")' } });
  assert.equal(run.code, Status.OK);
  assert.equal(run.result?.outputs.stdout?.length, 1024);
  assert.equal(run.result?.outputs.stdout_truncated, 'true');
  assert.equal(run.result?.outputs.stderr_truncated, undefined);
  const lines = run.logs.flatMap((l) => l.message.split('\n'));
  assert.deepEqual(
    lines,
    Array.from({ length: 500 }, (_, i) => String(i).padStart(9, '0')),
  );
});

test('long output without newlines streams in pieces and binary output does not break the stream', async () => {
  const run = await runTask(worker.tasks, {
    sessionId,
    toolName: 'run.python',
    arguments: { code: 'import sys\nsys.stdout.write("x" * 200000)\nsys.stdout.flush()\nsys.stdout.buffer.write(bytes(range(256)))' },
  });
  assert.equal(run.code, Status.OK);
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
  assert.ok(run.logs.length >= 3);
  assert.ok(run.logs.reduce((n, l) => n + l.message.length, 0) >= 200000);
});
