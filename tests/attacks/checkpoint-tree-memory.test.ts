import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// The worker's heap against session code (promise C: a session cannot crash the worker). A
// checkpoint holds a tree of every file of its session while it runs, and each session kept its
// last one (and a restored session its baseline too) for its next incremental checkpoint; a
// restarted worker read every session's back at once. Files are cheap for session code: ten
// sessions of half a million empty files each, checkpointing side by side, took more heap than
// V8 gives the worker, and it died with every session in it (a restart read them all again).
// Here the worker gets a heap of 128 MB, and three sessions 50,000 files each: the same attack,
// scaled. Every checkpoint must be made, the worker must live, and no incremental checkpoint
// may lose track of its parent (a tree dropped from memory is read back from its file).
const FILES = 50_000;
const env = { NODE_OPTIONS: '--max-old-space-size=128', WORKER_SPARE_SESSIONS: '0', WORKER_LOG_LEVEL: 'info' };

const makeFiles = String.raw`
import os
for d in range(${FILES} // 1000):
    os.mkdir('d%02d' % d)
    for i in range(1000):
        os.close(os.open('d%02d/file-%04d-of-many-empty-files-made-by-session-code' % (d, i), os.O_WRONLY | os.O_CREAT, 0o644))
print('made')
`;

const alive = (w: RunningWorker) => w.process.exitCode === null && w.process.signalCode === null;

test('sessions of many files checkpointing side by side, then after a restart, do not take the worker down', { timeout: 240_000 }, async () => {
  const first = await startWorker({ env });
  let second: RunningWorker | undefined;
  try {
    const sessions = await Promise.all([0, 1, 2].map(async () => (await first.sessions.createSession({ workspaceId: 'many-files' })).sessionId));
    await Promise.all(sessions.map((id) => runTool(first.tasks, id, 'run.python', { code: makeFiles })));
    await Promise.all(sessions.map((sessionId) => first.sessions.checkpointSession({ sessionId })));
    assert.ok(alive(first), 'the worker lives through three checkpoints of 50,000 files at once');

    // Each changes one file; its incremental checkpoint lists that file alone.
    const changed = (i: number) => ({ path: `d07/changed-${i}.txt`, contents: `session ${i}` });
    await Promise.all(sessions.map((id, i) => runTool(first.tasks, id, 'fs.write', changed(i))));
    const incremental = await Promise.all(sessions.map((sessionId) => first.sessions.checkpointSession({ sessionId, incremental: true })));
    // (A full checkpoint would list all 50,000 files: modified_files of one is measured from the session's start.)
    incremental.forEach((c, i) => assert.deepEqual(c.metadata?.modifiedFiles, ['d07', changed(i).path], `session ${i}`));

    // A restart: the sessions are adopted, and their next incremental checkpoints still know their parents.
    first.process.kill('SIGKILL');
    await new Promise((resolve) => first.process.once('exit', resolve));
    second = await startWorker({ env, dataDir: first.dataDir });
    await Promise.all(sessions.map((id, i) => runTool(second!.tasks, id, 'fs.write', { path: 'after-restart.txt', contents: String(i) })));
    const afterRestart = await Promise.all(sessions.map((sessionId) => second!.sessions.checkpointSession({ sessionId, incremental: true })));
    afterRestart.forEach((c, i) => assert.deepEqual(c.metadata?.modifiedFiles, ['after-restart.txt'], `session ${i}`));

    // What was reported saved restores: every file, and the changed ones as written.
    const restored = await second.sessions.restoreSession({ checkpointId: afterRestart[1]!.checkpointId });
    const counted = await runTool(second.tasks, restored.sessionId, 'run.python', {
      code: "import os\nprint(sum(len(f) for _, _, f in os.walk('.')), open('d07/changed-1.txt').read(), open('after-restart.txt').read())",
    });
    assert.equal(counted.stdout?.trim(), `${FILES + 2} session 1 1`);
    assert.ok(alive(second), 'the worker lives');
  } finally {
    await second?.stop();
    await first.stop();
  }
});
