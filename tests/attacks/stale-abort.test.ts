import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { createWorkerClient, runTask as runClientTask, type WorkerClient } from '../../src/client/index.js';
import { runTask, runTool, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// A call's cancel must reach that call alone. A call whose process has ended is still running
// until its client takes its result: one that reads slowly (here: not at all past the first
// message, on a 64 KiB flow-control window) keeps it so, while its task group, back in the
// pool, goes to a later call's child. Cancelling the first call then (or its timeout passing)
// killed whatever ran in that group: the abort listener the call's run left on its signal.

let worker: RunningWorker;
let slowReader: WorkerClient;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
  slowReader = createWorkerClient(worker.address, { channelOptions: { 'grpc-node.flow_control_window': 65535 } });
});
after(async () => {
  slowReader?.close();
  await worker?.stop();
});

/** The line of /proc/self/cgroup naming the call's task group (v1: memory; v2: the one line). */
const GROUP_PY = "[l for l in open('/proc/self/cgroup') if ':memory:' in l or l.startswith('0::')][0].strip()";
const ATTEMPTS = 12;

test("cancelling a call whose process has ended never kills a later call's process in its reused task group", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'stale-abort' });
  let shared = 0;
  for (let attempt = 0; attempt < ATTEMPTS && shared < 2; attempt++) {
    // A: notes its group, prints a megabyte (far past the window), ends. Its client reads one message.
    const first = `first-${attempt}`;
    const calls = slowReader.tasks.executeTask({
      taskId: first,
      sessionId,
      toolName: 'run.python',
      arguments: { code: `open('group-${attempt}','w').write(${GROUP_PY})\nfor i in range(5000): print('x' * 200)\nopen('ended-${attempt}','w').close()` },
    });
    const stream = calls[Symbol.asyncIterator]();
    await stream.next();
    await waitFor(async () => (await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: `ended-${attempt}` } })).code === Status.OK);
    const firstGroup = (await runTool(worker.tasks, sessionId, 'fs.read', { path: `group-${attempt}` })).contents;
    // A call between, so that the child forked ahead for the next goes to the group given back.
    assert.equal((await runTool(worker.tasks, sessionId, 'run.python', { code: 'print(1)' })).stdout, '1\n');

    // B: says its group, then waits for the test's word; A is cancelled meanwhile.
    const victim = `victim-${attempt}`;
    let cancelled: Promise<unknown> | undefined;
    const second = runClientTask(
      worker.tasks,
      {
        sessionId,
        toolName: 'run.python',
        arguments: { code: `import os, time\nprint(${GROUP_PY}, flush=True)\nwhile not os.path.exists('${victim}'): time.sleep(0.01)\nprint('done')` },
      },
      {
        onLog: () => {
          cancelled ??= worker.tasks
            .cancelTask({ taskId: first, sessionId })
            .then(() => runTool(worker.tasks, sessionId, 'fs.write', { path: victim, contents: '' }));
        },
      },
    );
    const [secondGroup, rest] = await second.then((r) => [r.outputs.stdout?.split('\n')[0], r] as const);
    await cancelled;
    void stream.return?.(undefined);
    assert.equal(
      rest.exitCode,
      0,
      `attempt ${attempt}: the later call ended ${JSON.stringify(rest.outputs)} (its group ${secondGroup}, the cancelled call's ${firstGroup})`,
    );
    assert.equal(rest.outputs.stdout, `${secondGroup}\ndone\n`);
    if (secondGroup === firstGroup) shared++;
  }
  assert.ok(shared > 0, `in ${ATTEMPTS} attempts the later call never ran in the cancelled call's group: the attack was not made`);
});
