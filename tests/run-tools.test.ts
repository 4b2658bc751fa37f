import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { LANGUAGE_CASES, SHELL_SPAWNER } from './helpers/languages.js';
import { callTool, describeCall, processesMarked, runTool, statusOf, waitFor } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// Every session language's run tool and run.shell, over real gRPC: code runs, test suites run in
// the workspace with live output, and cancel and timeout end the whole process tree.

let worker: RunningWorker;
const MARK = 'CODEGEN_TEST_MARK';

before(async () => {
  worker = await startWorker({ env: { WORKER_LANGUAGES: LANGUAGE_CASES.map((c) => c.language).join(',') } });
});
after(async () => worker?.stop());

async function sessionOf(language: string, mark = randomBytes(8).toString('hex')): Promise<{ sessionId: string; marked: () => number[] }> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: `ws-${language}`, config: { language, env: { [MARK]: mark } } });
  return { sessionId, marked: () => processesMarked(MARK, mark) };
}

/** The parent of `pid` (0 when it is gone). */
function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** A task's messages with the time each arrived. */
async function timedRun(sessionId: string, toolName: string, args: Record<string, string>, taskId?: string, timeoutSeconds = 0) {
  const seen: { at: number; kind: string; text: string }[] = [];
  let result;
  let code = Status.OK;
  try {
    for await (const m of worker.tasks.executeTask({ sessionId, taskId, toolName, arguments: args, constraints: { timeoutSeconds } })) {
      const p = m.payload;
      if (p?.$case === 'log') seen.push({ at: Date.now(), kind: 'log', text: p.value.message });
      if (p?.$case === 'result') {
        seen.push({ at: Date.now(), kind: 'result', text: '' });
        result = p.value;
      }
    }
  } catch (err) {
    code = (err as { code: Status }).code;
  }
  return { seen, result, code };
}

for (const lang of LANGUAGE_CASES) {
  test(`${lang.runTool} runs code in a ${lang.language} session; other languages' run tools are INVALID_ARGUMENT naming the session's tools`, async () => {
    const { sessionId } = await sessionOf(lang.language);
    assert.equal((await runTool(worker.tasks, sessionId, lang.runTool, { code: lang.hello })).stdout, 'hello\n');
    for (const other of ['run.python', 'run.node', 'run.go'].filter((t) => t !== lang.runTool)) {
      const refused = await callTool(worker.tasks, sessionId, other, { code: '' });
      assert.equal(refused.code, Status.INVALID_ARGUMENT, describeCall(refused));
      assert.match(
        refused.details,
        new RegExp(
          `this ${lang.language} session offers echo, fs\\.write, fs\\.read, fs\\.list, ${lang.runTool.replace('.', '\\.')}, run\\.shell, pkg\\.install, proc\\.list, proc\\.output, proc\\.stdin, proc\\.signal, proc\\.resize, port\\.url$`,
        ),
      );
    }
    await worker.sessions.destroySession({ sessionId });
  });

  test(`run.shell runs a ${lang.language} test suite in the workspace, its output streamed while it runs`, async () => {
    const { sessionId } = await sessionOf(lang.language);
    for (const [path, contents] of Object.entries(lang.testSuite.files)) await runTool(worker.tasks, sessionId, 'fs.write', { path, contents });
    const suite = await callTool(worker.tasks, sessionId, 'run.shell', { command: lang.testSuite.command }, 120_000);
    assert.equal(suite.result?.status, TaskStatus.STATUS_SUCCESS, suite.text.slice(-2000));
    assert.equal(suite.result?.outputs.exit_code, '0');
    assert.match(suite.text, lang.testSuite.passed);
    // Live: a line printed before a pause reaches the client before the command ends.
    const live = await timedRun(sessionId, 'run.shell', { command: 'echo first; sleep 1.5; echo second' });
    const first = live.seen.find((s) => s.text === 'first');
    const end = live.seen.find((s) => s.kind === 'result');
    assert.ok(first && end && end.at - first.at >= 1000, `first line ${first ? end!.at - first.at : 'never'} ms before the end`);
    await worker.sessions.destroySession({ sessionId });
  });

  for (const [tool, code] of [
    [lang.runTool, lang.spawner],
    ['run.shell', SHELL_SPAWNER],
  ] as const) {
    const args: Record<string, string> = tool === 'run.shell' ? { command: code } : { code };

    test(`${tool} in a ${lang.language} session: CancelTask and a timeout each end the whole process tree`, async () => {
      const { sessionId, marked } = await sessionOf(lang.language);
      await runTool(worker.tasks, sessionId, tool, tool === 'run.shell' ? { command: 'true' } : { code: lang.hello });
      // The warm interpreter the session keeps between calls: the marked processes whose parent is
      // not marked. Its forked-ahead child is the next call's process and
      // is counted as soon as it runs that call (before naming itself codegen-ahead it looked
      // resident, and a tree of 2 was never 3: a CI failure).
      const now = marked();
      const resident = new Set(now.filter((pid) => !now.includes(parentOf(pid))));
      const leftovers = () => marked().filter((pid) => !resident.has(pid));

      const cancelled = timedRun(sessionId, tool, args, 'to-cancel');
      await waitFor(() => leftovers().length >= 3, 20_000);
      assert.deepEqual(await worker.tasks.cancelTask({ sessionId, taskId: 'to-cancel' }), { cancelled: true, state: 'canceled' });
      const ended = await cancelled;
      assert.equal(ended.code, Status.CANCELLED);
      assert.equal(ended.result?.status, TaskStatus.STATUS_CANCELLED);
      await waitFor(() => leftovers().length === 0, 2000).catch(() => assert.fail(`left running after cancel: ${leftovers().join(', ')}`));

      const timedOut = await timedRun(sessionId, tool, args, 'to-time-out', 2);
      assert.equal(timedOut.code, Status.DEADLINE_EXCEEDED);
      assert.equal(timedOut.result?.status, TaskStatus.STATUS_TIMEOUT);
      assert.equal(timedOut.result?.outputs.killed_by, 'timeout');
      assert.ok(
        timedOut.seen.some((s) => s.text.split('\n').includes('tree started')),
        `the tree started before the timeout: ${timedOut.seen.map((s) => s.text).join('|')}`,
      );
      await waitFor(() => leftovers().length === 0, 2000).catch(() => assert.fail(`left running after the timeout: ${leftovers().join(', ')}`));
      await worker.sessions.destroySession({ sessionId });
    });
  }
}

test("a new session's workspace holds what its language starts one with: Go's go.mod, nothing for the others (their spares are the default language's)", async () => {
  for (const lang of LANGUAGE_CASES) {
    const { sessionId } = await sessionOf(lang.language);
    const listed = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'ls -A' });
    assert.equal(listed.stdout, lang.language === 'go' ? 'go.mod\n' : '', lang.language);
    await worker.sessions.destroySession({ sessionId });
  }
});

test("run.shell: the command's exit code is the result's; a failing command is a FAILURE result, not a call error", async () => {
  const { sessionId } = await sessionOf('python');
  const failed = await callTool(worker.tasks, sessionId, 'run.shell', { command: 'echo out; echo err >&2; exit 3' });
  assert.equal(failed.code, Status.OK);
  assert.equal(failed.result?.status, TaskStatus.STATUS_FAILURE);
  assert.deepEqual([failed.result?.outputs.exit_code, failed.result?.outputs.stdout, failed.result?.outputs.stderr], ['3', 'out\n', 'err\n']);
  assert.equal(failed.result?.error, 'the command exited with code 3');
  const missing = await callTool(worker.tasks, sessionId, 'run.shell', { command: 'no-such-command-here' });
  assert.equal(missing.result?.outputs.exit_code, '127');
  await worker.sessions.destroySession({ sessionId });
});

test('run.shell: cwd is a directory in the workspace; a file, a missing path or a link out of it is refused before anything runs', async () => {
  const { sessionId } = await sessionOf('python');
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'pkg/sub/x.txt', contents: 'x' });
  const inSub = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'pwd; ls', cwd: 'pkg/sub' });
  assert.match(inSub.stdout!, /\/pkg\/sub\nx\.txt\n$/);
  await runTool(worker.tasks, sessionId, 'run.shell', { command: 'ln -s / rootlink; ln -s pkg pkglink' });
  for (const [cwd, status, pattern] of [
    ['pkg/sub/x.txt', Status.INVALID_ARGUMENT, /is not a directory/],
    ['nowhere', Status.NOT_FOUND, /nowhere/],
    ['rootlink', Status.INVALID_ARGUMENT, /rootlink/],
  ] as const) {
    const refused = await callTool(worker.tasks, sessionId, 'run.shell', { command: 'touch ran-here', cwd });
    assert.equal(refused.code, status, `${cwd}: ${describeCall(refused)}`);
    assert.match(refused.details, pattern);
  }
  const ran = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'find / -name ran-here 2>/dev/null | head -3' });
  assert.equal(ran.stdout, '', 'no refused command ran');
  // A link that stays in the workspace is followed, as by the fs tools.
  assert.equal((await runTool(worker.tasks, sessionId, 'run.shell', { command: 'ls', cwd: 'pkglink/sub' })).stdout, 'x.txt\n');
  await worker.sessions.destroySession({ sessionId });
});

test("run.shell runs as the session in its sandbox: its environment's python first on PATH, the session's env, none of the worker's, no host secrets", async () => {
  const { sessionId } = await sessionOf('python');
  const out = await runTool(worker.tasks, sessionId, 'run.shell', {
    command:
      'command -v python; python -c "import sys; print(sys.prefix)"; id -u; env | grep -c "^WORKER_" || true; echo "mark=${CODEGEN_TEST_MARK:+set}"; cat /etc/shadow 2>&1 | head -1',
  });
  const [python, prefix, uid, workerVars, mark, shadow] = out.stdout!.trim().split('\n');
  assert.equal(python, `${prefix}/bin/python`);
  assert.notEqual(uid, '0');
  assert.equal(workerVars, '0');
  assert.equal(mark, 'mark=set');
  assert.match(shadow ?? '', /No such file|Permission denied/);
  await worker.sessions.destroySession({ sessionId });
});

test('with WORKER_LANGUAGES unset, a worker offers python and every language whose toolchain this host has', async () => {
  const plain = await startWorker({ env: { WORKER_LANGUAGES: undefined } });
  try {
    const listening = plain.logs.find((l) => l.message === 'worker listening');
    assert.equal(listening?.languages, LANGUAGE_CASES.map((c) => c.language).join(','), 'this host has node and go (make installs go)');
    for (const { language } of LANGUAGE_CASES) await plain.sessions.createSession({ workspaceId: 'default-languages', config: { language } });
  } finally {
    await plain.stop();
  }
});

test("a language whose sandbox self-check fails does not hold up start-up; its sessions are refused, saying so, and the others' are made", async () => {
  // A go command that answers the worker's questions but whose toolchain cannot build anything.
  const fake = mkdtempSync(join(tmpdir(), 'broken-go-'));
  chmodSync(fake, 0o755);
  mkdirSync(join(fake, 'root', 'bin'), { recursive: true });
  writeFileSync(join(fake, 'go'), `#!/bin/sh\necho ${fake}/root\necho go1.19.8\n`, { mode: 0o755 });
  writeFileSync(join(fake, 'root', 'bin', 'go'), '#!/bin/sh\necho "this toolchain is broken" >&2\nexit 3\n', { mode: 0o755 });
  const broken = await startWorker({ env: { WORKER_LANGUAGES: 'python,go', WORKER_GO: join(fake, 'go') } });
  try {
    const refused = await statusOf(broken.sessions.createSession({ workspaceId: 'broken-go', config: { language: 'go' } }));
    assert.equal(refused, Status.INTERNAL);
    await assert.rejects(broken.sessions.createSession({ workspaceId: 'broken-go', config: { language: 'go' } }), /go sessions are unavailable on this worker/);
    assert.ok(
      broken.logs.some(
        (l) => l.message === 'go sessions are unavailable: the sandbox self-check failed' && String(l.error).includes('this toolchain is broken'),
      ),
    );
    await broken.sessions.createSession({ workspaceId: 'python-still', config: { language: 'python' } });
  } finally {
    await broken.stop();
    rmSync(fake, { recursive: true, force: true });
  }
});
