// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ClientError, Status } from 'nice-grpc';
import { processesMarked, callTool, describeCall } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "trees the host cannot name; restart after kill -9": what a session leaves on disk must go
// when it is destroyed, however deep, and a worker must start on whatever an earlier run left
// in its data directory, stale quota mounts included.

const MARK = `leftovers-${randomBytes(6).toString('hex')}`;

/** Mount points at or below `dir` in this mount namespace (the worker's), deepest last. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}

/** Leaves the machine clean whatever happened: processes, mounts, then the tree (GNU rm copes with any depth). */
function cleanUp(dir: string): void {
  for (const pid of processesMarked('CODEGEN_LEFTOVERS_MARK', MARK)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const point of mountsUnder(dir).reverse()) {
    try {
      execFileSync('umount', ['-l', point], { stdio: 'pipe' });
    } catch {
      // already gone
    }
  }
  execFileSync('rm', ['-rf', '--one-file-system', dir], { stdio: 'pipe' });
}

/** Removes the cgroup subtree a worker killed with SIGKILL left (a worker that starts would, but B may not). */
function removeCgroupsOf(pid: number | undefined): void {
  if (pid === undefined || existsSync(`/proc/${pid}`)) return;
  try {
    const dirs = execFileSync('find', ['/sys/fs/cgroup', '-maxdepth', '6', '-type', 'd', '-name', `codegen-${pid}`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    for (const dir of dirs.split('\n').filter(Boolean)) execFileSync('find', [dir, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', '+'], { stdio: 'ignore' });
  } catch {
    // best effort: the next worker to start removes it too
  }
}

/** 60 levels of 200-character names (about 12 kB of path, three times PATH_MAX), a file at the bottom, 2000 small files beside. */
const DEEP_TREE = `
import os
os.mkdir("many")
for i in range(2000):
    with open("many/f%d" % i, "w") as f:
        f.write("x")
top = os.getcwd()
for i in range(60):
    name = (("d%02d" % i) * 67)[:200]
    os.mkdir(name)
    os.chdir(name)
with open("deepest.txt", "w") as f:
    f.write("deep")
os.chdir(top)
print("tree made")
`;

async function createSession(w: RunningWorker, workspaceId: string, maxDiskMb = 0): Promise<string> {
  const config = {
    env: { CODEGEN_LEFTOVERS_MARK: MARK },
    ...(maxDiskMb ? { limits: { maxMemoryMb: 0, maxCpuPercent: 0, maxDiskMb, timeoutSeconds: 0 } } : {}),
  };
  return (await w.sessions.createSession({ workspaceId, config }, { deadline: 15_000 })).sessionId;
}

async function makeDeepTree(w: RunningWorker, sessionId: string): Promise<void> {
  const made = await callTool(w.tasks, sessionId, 'run.python', { code: DEEP_TREE }, 60_000);
  assert.equal(made.result?.outputs.stdout, 'tree made\n', describeCall(made));
}

test('DestroySession removes a tree deeper than PATH_MAX', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-leftovers-'));
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker({ dataDir });
    const sessionId = await createSession(worker, 'deep');
    await makeDeepTree(worker, sessionId);

    const problems: string[] = [];
    const started = Date.now();
    try {
      await worker.sessions.destroySession({ sessionId }, { deadline: 20_000 });
    } catch (err) {
      if (!(err instanceof ClientError)) throw err;
      problems.push(`DestroySession answered ${Status[err.code]}: ${err.details.slice(0, 200)}… after ${Date.now() - started} ms`);
    }
    const root = join(dataDir, 'sessions', sessionId);
    if (existsSync(root)) problems.push(`${root} is still on the host`);
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    await stopHard(worker);
    cleanUp(dataDir);
  }
});

test('a worker starts on the data directory a worker killed with SIGKILL left (quota mount, deep tree)', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'codegen-leftovers-'));
  let a: RunningWorker | undefined;
  let b: RunningWorker | undefined;
  try {
    a = await startWorker({ dataDir });
    const capped = await createSession(a, 'capped', 64);
    const written = await callTool(a.tasks, capped, 'fs.write', { path: 'inside-the-quota.txt', contents: 'x'.repeat(4096) });
    assert.equal(written.code, Status.OK, describeCall(written));
    const deep = await createSession(a, 'deep');
    await makeDeepTree(a, deep);
    const leftMounts = mountsUnder(dataDir);

    a.process.kill('SIGKILL');
    await new Promise((resolve) => (a!.process.exitCode !== null || a!.process.signalCode !== null ? resolve(undefined) : a!.process.once('exit', resolve)));

    const problems: string[] = [];
    try {
      b = await startWorker({ dataDir });
    } catch (err) {
      problems.push(
        `B did not start on the data directory A left (mounts A left: ${leftMounts.join(', ') || 'none'}): ${(err as Error).message.slice(0, 400)}`,
      );
    }
    if (b) {
      const sessionId = await createSession(b, 'after-restart');
      const run = await callTool(b.tasks, sessionId, 'run.python', { code: 'print(6*7)' });
      if (run.result?.outputs.stdout !== '42\n') problems.push(`B's new session: run.python print(6*7): ${describeCall(run)}`);
      await stopHard(b);
      if (b.process.exitCode === null && b.process.signalCode === null) problems.push('B did not stop');
    }
    const remaining = mountsUnder(dataDir);
    if (remaining.length > 0) problems.push(`mounts left under the data directory after B stopped: ${remaining.join(', ')}`);
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    if (a && a.process.exitCode === null && a.process.signalCode === null) {
      a.process.kill('SIGKILL');
      await new Promise((resolve) => a!.process.once('exit', resolve));
    }
    await stopHard(b);
    cleanUp(dataDir);
    removeCgroupsOf(a?.process.pid);
  }
});
