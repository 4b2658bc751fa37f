import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status, type ClientError } from 'nice-grpc';
import { startWorker, type RunningWorker } from '../helpers/worker.js';
import { runTool } from '../helpers/tasks.js';
import { differences, manifestOf } from './manifest.js';

// Promise A: "every modification time to the microsecond". ext4 (256-byte inodes) keeps times
// from 1901 to 2446 to the nanosecond, and a session sets any of them with utime.
let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => worker?.stop());

const SETUP = String.raw`
import os
os.chdir('/workspace')
def mk(name, ns, data=b'x'):
    with open(name, 'wb') as f: f.write(data)
    os.utime(name, ns=(ns, ns))
os.mkdir('t')
mk('t/before1970', -1_000_250_000_000)           # 1969-12-31 23:43:19.750000
mk('t/before1970b', -86_400_000_001_000)         # 1969-12-31 00:00:00 less 1 us
mk('t/year2100', 4_102_444_800_000_001_000)      # 2100-01-01 00:00:00.000001
mk('t/today', 1_700_000_000_000_001_000)         # control
os.mkdir('t/dir1960'); os.utime('t/dir1960', ns=(0, -315_619_199_999_999_000))
os.symlink('/etc/passwd', 't/link1960')
os.utime('t/link1960', ns=(0, -315_619_199_999_999_000), follow_symlinks=False)
os.utime('t', ns=(0, 1_600_000_000_000_000_000))
`;

test('a file dated after 2107 is saved, or the checkpoint fails naming it', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'times-2108' });
  // touch -d 2200-01-01 would do; ext4 keeps times to 2446.
  await runTool(worker.tasks, sessionId, 'run.python', {
    code: "import os\nopen('/workspace/y2445', 'wb').write(b'x')\nos.utime('/workspace/y2445', ns=(0, 15_000_000_000_123_457_000))",
  });
  const saved = await manifestOf(worker.tasks, sessionId);
  let outcome: string;
  try {
    const { checkpointId } = await worker.sessions.checkpointSession({ sessionId, incremental: false });
    const restored = await worker.sessions.restoreSession({ checkpointId });
    outcome = JSON.stringify(differences(saved, await manifestOf(worker.tasks, restored.sessionId)));
  } catch (err) {
    const { code, details } = err as ClientError;
    outcome = `${Status[code]}: ${details}`;
    // What was promised instead of a round trip: a clear code naming the path.
    assert.equal(code, Status.FAILED_PRECONDITION, outcome);
    assert.match(details, /y2445/, outcome);
    return;
  }
  assert.equal(outcome, '[]');
});

test('a checkpoint restores every modification time to the microsecond', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'times' });
  await runTool(worker.tasks, sessionId, 'run.python', { code: SETUP });
  const saved = await manifestOf(worker.tasks, sessionId);
  const { checkpointId } = await worker.sessions.checkpointSession({ sessionId, incremental: false });
  const restored = await worker.sessions.restoreSession({ checkpointId });
  const back = await manifestOf(worker.tasks, restored.sessionId);
  assert.deepEqual(differences(saved, back), []);
});
