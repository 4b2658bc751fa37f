// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, statusOf } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// A session with more files than the worker may hold descriptors (RLIMIT_NOFILE, 20000 here) is
// checkpointed: archiver starts reading every appended source at once, so appending them all
// opened every file together, an EMFILE nobody listened for, and the worker (every session)
// exited. Entries now go one at a time and a failing source fails only the checkpoint.

const FILES = 30_000;
let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
  worker.process.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-3000)));
});
let stderr = '';
after(async () => {
  // A crashed worker leaves its quota mounts: unmount them so the data directory can go.
  const dataDir = worker.dataDir;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point?.startsWith(`${dataDir}/`)) execFileSync('umount', ['-l', point]);
  }
  await stopHard(worker, 3_000);
});

const status = (pid: number, field: string) =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? -1) / 1024;

test('a session with 30000 files is checkpointed, and the worker stays up', async (t) => {
  const sessionId = (await worker.sessions.createSession({ workspaceId: 'many' }, { deadline: 10_000 })).sessionId;
  const make = await callTool(
    worker.tasks,
    sessionId,
    'run.python',
    {
      code: `import os\nfor d in range(max(1, ${FILES} // 10000)):\n    os.mkdir(f"d{d}")\n    for i in range(min(10000, ${FILES})):\n        os.close(os.open(f"d{d}/f{i:05d}", os.O_CREAT | os.O_WRONLY))\nprint("made", ${FILES})`,
    },
    300_000,
  );
  t.diagnostic(`made: ${make.result?.outputs.stdout?.trim()} ${make.details}`);
  const pid = worker.process.pid!;
  const rssBefore = status(pid, 'VmRSS');
  const started = Date.now();
  const cp = await statusOf(worker.sessions.checkpointSession({ sessionId, incremental: false }, { deadline: 600_000 }));
  t.diagnostic(
    `checkpoint of ${FILES} empty files: ${Status[cp]} in ${Date.now() - started} ms; worker RSS ${rssBefore.toFixed(0)} MB before, peak ${status(pid, 'VmHWM').toFixed(0)} MB, now ${status(pid, 'VmRSS').toFixed(0)} MB; alive ${worker.process.exitCode === null && worker.process.signalCode === null}`,
  );
  // A round trip through the worker: whatever the checkpoint set off on it has run by its answer,
  // and it answers only if it still runs.
  const after = await statusOf(worker.sessions.getCapacity({}));
  t.diagnostic(`worker exit: code ${worker.process.exitCode} signal ${worker.process.signalCode}; stderr: ${stderr.slice(-1500)}`);
  t.diagnostic(`last log lines: ${JSON.stringify(worker.logs.slice(-3)).slice(0, 1500)}`);
  assert.equal(cp, Status.OK);
  assert.equal(after, Status.OK, `the worker answers after the checkpoint: ${Status[after]}`);
  assert.ok(worker.process.exitCode === null && worker.process.signalCode === null, 'the worker still runs');
});
