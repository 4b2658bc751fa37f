import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ClientError, Status } from 'nice-grpc';
import { callTool, describeCall, statusOf, type ToolCall } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// "root runs with the session-chosen environment": a session's config.env must reach only the
// session's own process, after the privilege drop, inside the namespaces; never the root-run
// chain that starts it (/bin/sh joining cgroups, prlimit, bwrap, setpriv).

let worker: RunningWorker;
let scratch: string; // .so and marker dirs live here (removed in after)

async function python(w: RunningWorker, sessionId: string, code: string): Promise<{ stdout: string; stderr: string; call: ToolCall }> {
  const c = await callTool(w.tasks, sessionId, 'run.python', { code });
  return { stdout: c.result?.outputs.stdout ?? '', stderr: c.result?.outputs.stderr ?? '', call: c };
}

async function createSession(w: RunningWorker, env: Record<string, string>): Promise<string> {
  return (await w.sessions.createSession({ workspaceId: 'env-attack', config: { env } }, { deadline: 15_000 })).sessionId;
}

async function createSessionStatus(w: RunningWorker, env: Record<string, string>): Promise<{ code: Status; details: string; sessionId?: string }> {
  try {
    const { sessionId } = await w.sessions.createSession({ workspaceId: 'env-limits', config: { env } }, { deadline: 15_000 });
    return { code: Status.OK, details: '', sessionId };
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    return { code: err.code, details: err.details };
  }
}

const PRELOAD_SOURCE = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void codegen_probe(void) {
  const char *path = getenv("MARKER_FILE");
  if (!path) return;
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) n = 0;
  exe[n] = 0;
  char line[768];
  int len = snprintf(line, sizeof line, "uid=%d euid=%d exe=%s\\n", (int)getuid(), (int)geteuid(), exe);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0666);
  if (fd < 0) return;
  if (write(fd, line, len) < 0) {}
  close(fd);
}
`;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'codegen-env-attack-'));
  await chmod(scratch, 0o755);
  worker = await startWorker();
});

after(async () => {
  await stopHard(worker);
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** The preload library, built once on the host (world-readable), as bytes and as a host path. */
async function buildProbeLibrary(): Promise<{ path: string; bytes: Buffer }> {
  const libDir = join(scratch, 'lib');
  mkdirSync(libDir, { recursive: true });
  await chmod(libDir, 0o755);
  await writeFile(join(libDir, 'probe.c'), PRELOAD_SOURCE);
  const path = join(libDir, 'probe.so');
  execFileSync('cc', ['-shared', '-fPIC', '-o', path, join(libDir, 'probe.c')], { stdio: 'pipe' });
  await chmod(path, 0o755);
  return { path, bytes: readFileSync(path) };
}

function workspaceOf(w: RunningWorker, sessionId: string): string {
  return join(w.dataDir, 'sessions', sessionId, 'disk', 'workspace');
}

test('LD_PRELOAD from config.env is never loaded by a root process', async () => {
  const library = await buildProbeLibrary();
  const markerDir = join(scratch, 'marker');
  mkdirSync(markerDir, { recursive: true });
  await chmod(markerDir, 0o777);
  const problems: string[] = [];

  // 1. The library and the marker on the host: what root runs outside the namespaces loads it.
  const hostMarker = join(markerDir, 'marker.txt');
  const onHost = await createSession(worker, { LD_PRELOAD: library.path, MARKER_FILE: hostMarker });
  // 2. The library and the marker in the workspace: what root runs inside the namespaces (before
  //    the privilege drop) loads it. The session wrote that library itself.
  const inWorkspace = await createSession(worker, { LD_PRELOAD: '/workspace/probe.so', MARKER_FILE: '/workspace/marker.txt' });
  const put = await callTool(worker.tasks, inWorkspace, 'fs.write', { path: 'probe.so', contents: library.bytes.toString('base64'), encoding: 'base64' });
  assert.equal(put.code, Status.OK, describeCall(put));

  for (const [where, sessionId, marker] of [
    ['host path', onHost, hostMarker],
    ['workspace path', inWorkspace, join(workspaceOf(worker, inWorkspace), 'marker.txt')],
  ] as const) {
    // The first call starts the session's warm interpreter (the whole launch chain), the second forks from it.
    for (const attempt of ['first', 'second']) {
      const run = await python(worker, sessionId, 'print(6*7)');
      // stderr may carry ld.so's "cannot be preloaded" warning where the library is not visible.
      if (run.call.code !== Status.OK || run.stdout !== '42\n') problems.push(`${where}, ${attempt} call: ${describeCall(run.call)}`);
    }
    const lines = existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean) : [];
    if (lines.some((l) => /\b(uid|euid)=0\b/.test(l))) problems.push(`LD_PRELOAD (${where}) was loaded by processes running as root:\n  ${lines.join('\n  ')}`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('LD_DEBUG_OUTPUT from config.env makes no root process write a file', async () => {
  const outDir = join(scratch, 'lddebug-out');
  mkdirSync(outDir, { recursive: true });
  await chmod(outDir, 0o777);
  const problems: string[] = [];
  for (const where of ['host path', 'workspace path'] as const) {
    // Each its own worker: on the current code both die (see the last check).
    const w = await startWorker();
    try {
      const sessionId = await createSession(w, { LD_DEBUG: 'all', LD_DEBUG_OUTPUT: where === 'host path' ? join(outDir, 'lddebug') : '/workspace/lddebug' });
      const run = await python(w, sessionId, 'print(6*7)');
      const dir = where === 'host path' ? outDir : workspaceOf(w, sessionId);
      const written = (existsSync(dir) ? readdirSync(dir) : [])
        .filter((name) => name.startsWith('lddebug'))
        .map((name) => {
          const st = statSync(join(dir, name));
          return { name, uid: st.uid, bytes: st.size };
        });
      if (written.some((f) => f.uid === 0)) problems.push(`ld.so debug files (${where}) written by root processes: ${JSON.stringify(written)}`);
      // Where ld.so cannot open LD_DEBUG_OUTPUT it writes to stdout instead, interleaved with
      // what the code prints: the task's stdout carries that, but the worker must survive it.
      if (run.call.code !== Status.OK || !/42/.test(run.stdout)) problems.push(`${where}: run.python print(6*7): ${describeCall(run.call).slice(0, 400)}`);
      // A round trip through the worker: anything the run set off on it has run by its answer.
      const capacity = await statusOf(w.sessions.getCapacity({}));
      if (capacity !== Status.OK) problems.push(`${where}: GetCapacity after the run: ${Status[capacity]}`);
      if (w.process.exitCode !== null) problems.push(`${where}: the worker exited (${w.process.exitCode})`);
    } finally {
      await stopHard(w);
    }
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('LD_DEBUG in config.env does not bring the worker down', async () => {
  // Its own worker: on the current code this one dies.
  const w = await startWorker();
  try {
    const libs = await createSession(w, { LD_DEBUG: 'libs' });
    const run = await python(w, libs, 'print(6*7)');
    assert.equal(run.call.code, Status.OK, describeCall(run.call));
    assert.equal(run.stdout, '42\n', describeCall(run.call));

    // LD_DEBUG=help makes ld.so print its help to stdout and exit instead of running the program.
    // Whatever the task's own result, the worker must not die of it.
    const help = await createSession(w, { LD_DEBUG: 'help' });
    const helpRun = await python(w, help, 'print(6*7)');
    // A round trip through the worker: anything the run set off on it has run by its answer.
    await statusOf(w.sessions.getCapacity({}));
    assert.equal(
      w.process.exitCode,
      null,
      `the worker exited (${w.process.exitCode}) after a session with LD_DEBUG=help ran code: ${describeCall(helpRun.call)}`,
    );
    assert.notEqual(helpRun.call.code, Status.UNAVAILABLE, describeCall(helpRun.call));

    const clean = await createSession(w, {});
    const cleanRun = await python(w, clean, 'print(6*7)');
    assert.equal(cleanRun.stdout, '42\n', describeCall(cleanRun.call));
    assert.equal(w.process.exitCode, null, 'the worker still runs');
  } finally {
    await stopHard(w);
  }
});

test('config.env is bounded at CreateSession: sizes and names', async () => {
  const cases: { what: string; env: Record<string, string>; names: RegExp }[] = [
    { what: 'one 200 kB value', env: { BIG: 'x'.repeat(200 * 1000) }, names: /BIG|env/i },
    { what: '1000 variables', env: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`V${i}`, 'x'])), names: /env/i },
    { what: 'a 300-character name', env: { ['N'.repeat(300)]: 'x' }, names: /N{20}|env|name/i },
    { what: "the name 'A=B'", env: { 'A=B': 'x' }, names: /A=B|env/i },
    {
      what: '150 KiB in all (5 values of 30 KiB)',
      env: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`BIG${i}`, 'x'.repeat(30 * 1024)])),
      names: /env/i,
    },
  ];
  const failures: string[] = [];
  for (const c of cases) {
    const created = await createSessionStatus(worker, c.env);
    if (created.code !== Status.INVALID_ARGUMENT) {
      let task = '';
      if (created.sessionId) {
        const run = await python(worker, created.sessionId, 'print(6*7)');
        task = `; then run.python print(6*7): ${describeCall(run.call).slice(0, 300)}`;
        await worker.sessions.destroySession({ sessionId: created.sessionId }, { deadline: 15_000 }).catch(() => undefined);
      }
      failures.push(`${c.what}: CreateSession answered ${Status[created.code]} ${created.details}${task}`);
      continue;
    }
    if (!c.names.test(created.details) || (c.what !== "the name 'A=B'" && !/\d/.test(created.details))) {
      failures.push(`${c.what}: INVALID_ARGUMENT, but the message does not name the variable (or env) and a limit: ${created.details}`);
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));

  // Within the limits: a 30 KiB value is accepted and the session's code sees it whole.
  const ok = await createSessionStatus(worker, { BIG: 'y'.repeat(30 * 1024) });
  assert.equal(ok.code, Status.OK, ok.details);
  const run = await python(worker, ok.sessionId!, "import os\nprint(len(os.environ['BIG']))");
  assert.equal(run.stdout, '30720\n', describeCall(run.call));
});
