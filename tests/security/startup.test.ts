import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
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
    assert.ok(!sandboxed.logs.some((l) => l.level === 'warn' && /isolation/.test(String(l.message))));
  } finally {
    await sandboxed.stop();
  }
});
