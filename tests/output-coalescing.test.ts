// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import type { LogEntry } from '../gen/codegen/v1/task_execution.js';
import { runTask, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// A task printing short lines as fast as it can must not become one gRPC message per line (a
// flood of messages slows every other session's calls): consecutive output of a stream goes out
// together, at most once per 20 ms or per 64 Ki characters, and still live.

let worker: RunningWorker;
let sessionId: string;

before(async () => {
  // Results keep all of the 1.3 MB these tasks print, so their outputs can be compared whole.
  worker = await startWorker({ env: { WORKER_MAX_OUTPUT_BYTES: String(4 * 1024 * 1024) } });
  ({ sessionId } = await worker.sessions.createSession({ workspaceId: 'coalescing' }));
});

after(async () => worker?.stop());

/** The text the messages carry: each holds whole lines joined by newlines, without the last one's. */
const textOf = (logs: LogEntry[]) => logs.map((l) => `${l.message}\n`).join('');

test('200,000 short lines printed one write each arrive in far fewer messages, every line once and in order', async () => {
  const lines = 200_000;
  const code = `import sys\nw = sys.stdout.write\nfor i in range(${lines}):\n    w(f"{i}\\n")`;
  const expected = Array.from({ length: lines }, (_, i) => `${i}\n`).join('');
  const started = Date.now();
  const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 120 } });
  const elapsedMs = Date.now() - started;
  assert.equal(run.code, Status.OK);
  assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
  assert.equal(run.result?.outputs.stdout, expected, "the result's outputs are what was printed");
  assert.ok(
    run.logs.every((l) => l.source === 'stdout'),
    'all from stdout',
  );
  assert.ok(textOf(run.logs) === expected, 'the messages carry exactly what was printed, in order');
  // One message per 20 ms of the whole call (an upper bound on the task's run), one per 64 Ki
  // characters, and a few for the edges.
  const allowed = Math.ceil(elapsedMs / 20) + Math.ceil(expected.length / (64 * 1024)) + 4;
  assert.ok(run.logs.length <= allowed, `${run.logs.length} log messages for ${lines} lines in ${elapsedMs} ms (at most ${allowed})`);
});

test('a line printed right after a burst, then a pause, reaches the client while the task waits for it', async () => {
  // The task waits for a file the test writes only once it has received "ready": delivered at
  // the task's end instead, it never ends (and the timeout fails the test).
  const code = [
    'import os, sys, time',
    'for i in range(50000):',
    '    sys.stdout.write(f"{i}\\n")',
    'print("ready")',
    'while not os.path.exists("go"):',
    '    time.sleep(0.01)',
    'print("went")',
  ].join('\n');
  const logs: LogEntry[] = [];
  let result;
  for await (const message of worker.tasks.executeTask({ sessionId, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 30 } })) {
    const payload = message.payload;
    if (payload?.$case === 'log') {
      logs.push(payload.value);
      if (payload.value.message.split('\n').includes('ready')) await runTool(worker.tasks, sessionId, 'fs.write', { path: 'go', contents: '' });
    }
    if (payload?.$case === 'result') result = payload.value;
  }
  assert.equal(result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(result?.outputs.killed_by));
  const expected = `${Array.from({ length: 50000 }, (_, i) => `${i}\n`).join('')}ready\nwent\n`;
  assert.ok(textOf(logs) === expected, 'every line once, in order');
  assert.ok(logs.length < 1000, `${logs.length} messages for 50,002 lines`);
});

test('while another session makes calls (its reads paced), a task printing short lines on both streams loses, repeats and reorders none', async () => {
  const { sessionId: other } = await worker.sessions.createSession({ workspaceId: 'coalescing-neighbour' });
  let flooding = true;
  const neighbour = (async () => {
    let calls = 0;
    while (flooding || calls === 0) {
      await runTool(worker.tasks, other, 'run.shell', { command: 'true' });
      calls++;
    }
    return calls;
  })();
  try {
    const lines = 100_000;
    const code = `import sys\no, e = sys.stdout.write, sys.stderr.write\nfor i in range(${lines}):\n    (o if i % 3 else e)(f"{i}\\n")`;
    const run = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code }, constraints: { timeoutSeconds: 120 } });
    assert.equal(run.result?.status, TaskStatus.STATUS_SUCCESS);
    const of = (keep: (i: number) => boolean) =>
      Array.from({ length: lines }, (_, i) => i)
        .filter(keep)
        .map((i) => `${i}\n`)
        .join('');
    assert.ok(run.result?.outputs.stdout === of((i) => i % 3 !== 0), 'stdout whole and in order');
    assert.ok(run.result?.outputs.stderr === of((i) => i % 3 === 0), 'stderr whole and in order');
    assert.ok(textOf(run.logs.filter((l) => l.source === 'stdout')) === of((i) => i % 3 !== 0), "stdout's messages whole and in order");
    assert.ok(textOf(run.logs.filter((l) => l.source === 'stderr')) === of((i) => i % 3 === 0), "stderr's messages whole and in order");
  } finally {
    flooding = false;
    assert.ok((await neighbour) > 0);
    await worker.sessions.destroySession({ sessionId: other });
  }
});
