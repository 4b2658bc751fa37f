import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { waitFor } from '../helpers/tasks.js';
import { startWorker } from '../helpers/worker.js';

const MAIN = new URL('../../src/main.js', import.meta.url).pathname;

after(() => rmSync(join(tmpdir(), 'codegen-startup-test'), { recursive: true, force: true }));
const PYTHON = spawnSync('python3', ['-c', 'import sys, os; print(os.path.realpath(sys.executable))'], { encoding: 'utf8' }).stdout.trim();

function start(env: Record<string, string>) {
  return spawnSync(process.execPath, [MAIN, '--grpc-addr', '127.0.0.1:0', '--data-dir', join(tmpdir(), 'codegen-startup-test')], {
    env: { ...process.env, WORKER_PYTHON: PYTHON, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
}

test('a sandbox that does not work stops startup with a clear message', async () => {
  const fakeBin = await mkdtemp(join(tmpdir(), 'codegen-fake-bwrap-'));
  try {
    await writeFile(join(fakeBin, 'bwrap'), '#!/bin/sh\necho "bwrap: No permissions to create new namespace" >&2\nexit 1\n');
    await chmod(join(fakeBin, 'bwrap'), 0o755);
    const broken = start({ PATH: `${fakeBin}:/usr/bin:/bin` });
    assert.equal(broken.status, 1);
    assert.match(broken.stderr, /the bwrap sandbox does not work on this host .*No permissions to create new namespace.*WORKER_SANDBOX=none/s);

    const missing = start({ PATH: '/nonexistent' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /bubblewrap \(bwrap\) is not installed/);
  } finally {
    await rm(fakeBin, { recursive: true, force: true });
  }
});

test('WORKER_SANDBOX=none must be chosen explicitly and warns at startup and on every session', async () => {
  const worker = await startWorker({ env: { WORKER_SANDBOX: 'none' } });
  try {
    assert.ok(worker.logs.some((l) => l.level === 'warn' && /WITHOUT isolation/.test(String(l.message))));
    const { sessionId } = await worker.sessions.createSession({ workspaceId: 'w' });
    await waitFor(() => worker.logs.some((l) => l.level === 'warn' && l.session_id === sessionId && /WITHOUT a sandbox/.test(String(l.message))));
  } finally {
    await worker.stop();
  }
  const sandboxed = await startWorker();
  try {
    const ready = sandboxed.logs.find((l) => l.message === 'sandbox ready')!;
    assert.equal(ready.sandbox, 'bwrap');
    // Moving a warm call's child into its task group is quick (favorDynmods.ts): the kernel shows the option.
    assert.match(String(ready.cgroups), /moves quick/);
    assert.match(readFileSync('/proc/self/mounts', 'utf8'), /^cgroup2? \S+ cgroup2? \S*\bfavordynmods\b/m);
    assert.ok(!sandboxed.logs.some((l) => l.level === 'warn' && /isolation/.test(String(l.message))));
  } finally {
    await sandboxed.stop();
  }
});

/** Runs the worker's command line in a mount namespace of its own where the pids cgroup hierarchy is read-only. */
const withReadOnlyPids = ['unshare', '-m', 'sh', '-c', 'mount -o remount,bind,ro /sys/fs/cgroup/pids && exec "$@"', 'sh'];

test('limits that cannot be enforced stop startup, naming the controller and the fix; the development switch starts with a warning and a metric', async () => {
  const refused = spawnSync(
    withReadOnlyPids[0]!,
    [...withReadOnlyPids.slice(1), process.execPath, MAIN, '--grpc-addr', '127.0.0.1:0', '--data-dir', join(tmpdir(), 'codegen-startup-test')],
    {
      env: { ...process.env, WORKER_PYTHON: PYTHON, WORKER_SPARE_SESSIONS: '0' },
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  assert.equal(refused.status, 1, refused.stderr);
  const lines = refused.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${refused.stderr}`);
  assert.match(
    lines[0]!,
    /session limits cannot be enforced here \(pids\): cannot make the worker's cgroup in \/sys\/fs\/cgroup\/pids.*EROFS.*Fix: .*WORKER_ALLOW_UNENFORCED_LIMITS=true/,
  );

  const allowed = await startWorker({
    env: { WORKER_ALLOW_UNENFORCED_LIMITS: 'true', WORKER_SPARE_SESSIONS: '0' },
    namespace: {
      spawnInWorkerNamespace: (argv, options) => spawn(withReadOnlyPids[0]!, [...withReadOnlyPids.slice(1), ...argv], options ?? {}),
      forwardIntoWorkerNamespace: (port) => Promise.resolve(`127.0.0.1:${port}`),
    },
  });
  try {
    const warning = allowed.logs.find((l) => l.level === 'warn' && /WORKER_ALLOW_UNENFORCED_LIMITS=true/.test(String(l.message)));
    assert.ok(warning, 'warned at start');
    assert.deepEqual(Object.keys(warning.unenforced as object), ['pids']);
    const metrics = await (await fetch(`http://127.0.0.1:${allowed.httpPort}/metrics`)).text();
    assert.match(metrics, /^codegen_limits_unenforced\{controller="pids"\} 1$/m);
    assert.doesNotMatch(metrics, /^codegen_limits_unenforced\{controller="memory"\}/m);
  } finally {
    await allowed.stop();
  }
});
