// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { Status } from 'nice-grpc';
import { runTask, waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// A call's code must hold nothing of the zygote's plumbing: not its control pipes, and not the
// gate or the "connected" pipe of another call in flight (opening another call's gate early would
// run that call's code before the worker placed it in its task's cgroup). Calls' children are
// forked ahead of time (a forked-ahead child waits for each next call), so what one inherits is checked while
// another runs.

let worker: RunningWorker;

before(async () => {
  worker = await startWorker();
});

after(async () => {
  await worker?.stop();
});

const LIST_FDS = `
import os
fds = []
for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
    try:
        fds.append("%d:%s" % (fd, os.readlink("/proc/self/fd/%d" % fd)))
    except OSError:
        pass
print(" ".join(fds))
`;

test("a call's code holds only its own standard streams, also while another call of the session runs", async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'fds' });
  await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: 'pass' } });
  // Another call runs throughout: it says it has begun, and ends when told.
  const WAIT = 'import os, time\nopen("began", "w").close()\nwhile not os.path.exists("end"):\n    time.sleep(0.01)';
  const running = runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: WAIT } });
  await waitFor(async () => (await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'began' } })).code === Status.OK);
  for (let i = 0; i < 3; i++) {
    const listed = await runTask(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code: LIST_FDS } });
    assert.equal(listed.result?.status, TaskStatus.STATUS_SUCCESS, JSON.stringify(listed.result));
    const fds = listed.result!.outputs.stdout!.trim().split(' ');
    // stdin (/dev/null), stdout and stderr (the sockets to the worker), and the listing's own directory.
    const others = fds.filter((fd) => !/^[012]:/.test(fd) && !/:\/proc\/\d+\/fd$/.test(fd));
    assert.deepEqual(others, [], `descriptors a call inherited: ${fds.join(' ')}`);
  }
  await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'end', contents: '' } });
  assert.equal((await running).result?.status, TaskStatus.STATUS_SUCCESS);
});
