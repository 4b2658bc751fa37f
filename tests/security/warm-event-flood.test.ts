// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTaskWithin, waitFor } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// Every line the zygote writes is parsed on the worker's event loop. Well-formed lines that mean
// nothing ({"ev":"ready"} after startup, exit events for runs never asked for) were accepted
// without limit, so a session capped at 10% CPU could keep the worker's main thread busy. They
// now break the protocol: the zygote is stopped, its calls fall back, the worker goes on.

const MARK = randomBytes(8).toString('hex');
let worker: RunningWorker;

const SITECUSTOMIZE = String.raw`
import os, sys, threading
def _spam():
    chunk = b'{"ev":"ready"}\n' * 273
    while True:
        os.write(1, chunk)
if sys.argv[:1] == ["-c"]:
    threading.Thread(target=_spam, daemon=True).start()
`;

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function timeReads(sessionId: string, n: number): Promise<number> {
  const start = Date.now();
  for (let i = 0; i < n; i++) {
    const r = await runTaskWithin(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'keep.txt' } }, 10_000);
    assert.equal(r.code, Status.OK);
  }
  return (Date.now() - start) / n;
}

before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1' } });
});
after(async () => {
  await stopHard(worker, 3_000, ['CODEGEN_TEST_MARK', MARK]);
});

test('a zygote flooding the worker with meaningless events is stopped', async (t) => {
  const victim = (await worker.sessions.createSession({ workspaceId: 'victim' }, { deadline: 10_000 })).sessionId;
  await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'fs.write', arguments: { path: 'keep.txt', contents: 'x' } }, 10_000);
  const baseline = await timeReads(victim, 50);

  const attacker = (
    await worker.sessions.createSession(
      {
        workspaceId: 'attacker',
        config: {
          language: 'python',
          env: { PYTHONPATH: '/workspace', CODEGEN_TEST_MARK: MARK },
          limits: { maxCpuPercent: 10, maxMemoryMb: 0, maxDiskMb: 0, timeoutSeconds: 0 },
        },
      },
      { deadline: 10_000 },
    )
  ).sessionId;
  await runTaskWithin(worker.tasks, { sessionId: attacker, toolName: 'fs.write', arguments: { path: 'sitecustomize.py', contents: SITECUSTOMIZE } }, 10_000);
  const first = await runTaskWithin(worker.tasks, { sessionId: attacker, toolName: 'run.python', arguments: { code: 'print("hi")' } }, 30_000);
  t.diagnostic(`attacker run.python: ${Status[first.code]}`);
  const ticks0 = cpuTicks(worker.process.pid!);
  const t0 = Date.now();
  const flooded = await timeReads(victim, 50);
  const stoppedMessage = 'warm interpreter broke its protocol; it is stopped';
  await waitFor(() => worker.logs.some((l) => l.message === stoppedMessage), 10_000).catch(() => undefined); // asserted below
  const cpu = (100 * (cpuTicks(worker.process.pid!) - ticks0)) / 100 / ((Date.now() - t0) / 1000);
  t.diagnostic(`victim fs.read: ${baseline.toFixed(1)} ms before, ${flooded.toFixed(1)} ms during; worker CPU during: ${cpu.toFixed(0)}%`);
  const stopped = worker.logs.find((l) => l.message === stoppedMessage);
  assert.ok(stopped, `the flooding zygote was not stopped (worker CPU ${cpu.toFixed(0)}%)`);
  assert.equal(worker.process.exitCode, null, 'the worker still runs');
  const again = await runTaskWithin(worker.tasks, { sessionId: victim, toolName: 'run.python', arguments: { code: 'print(6*7)' } }, 30_000);
  assert.equal(again.result?.outputs.stdout, '42\n');
});
