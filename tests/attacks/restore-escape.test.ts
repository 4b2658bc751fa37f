import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { after, before, test } from 'node:test';
import { Status, type ClientError } from 'nice-grpc';
import { METHOD_STORE, ZipWriter, type ZipEntry } from '../../src/storage/zipWriter.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';
import { callTool } from '../helpers/tasks.js';
import { plantCheckpoint } from '../helpers/plantCheckpoint.js';

// Promise A: restore never writes outside the new session, whatever the store's archives say:
// links then files through them, across chained archives, duplicate names, dir/file clashes,
// deletions through links.
let worker: RunningWorker;
const outside = mkdtempSync(join(tmpdir(), 'attack-outside-'));
before(async () => {
  writeFileSync(join(outside, 'victim'), 'untouched');
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => {
  await worker?.stop();
  rmSync(outside, { recursive: true, force: true });
});

type Spec = [name: string, kind: 'file' | 'directory' | 'symlink', data?: string];

async function zipOf(specs: Spec[], deleted: string[]): Promise<Buffer> {
  const file = join(outside, '..', `attack-${process.pid}-${Math.random()}.zip`);
  const handle = await open(file, 'wx');
  const zip = new ZipWriter(handle);
  const entry = (name: string, kind: Spec[1], data: Buffer): ZipEntry => ({
    name,
    kind,
    mode: kind === 'symlink' ? 0o777 : kind === 'directory' ? 0o755 : 0o644,
    mtimeMs: Date.now(),
    method: METHOD_STORE,
    crc: crc32(data),
    size: data.length,
    data,
  });
  for (const [name, kind, data] of specs) await zip.add(entry(kind === 'directory' ? `${name}/` : name, kind, Buffer.from(data ?? '', 'latin1')));
  await zip.add(entry('deleted.json', 'file', Buffer.from(JSON.stringify(deleted))));
  await zip.add(entry('checkpoint.json', 'file', Buffer.from('{}')));
  await zip.finish();
  await handle.close();
  const bytes = readFileSync(file);
  rmSync(file);
  return bytes;
}

const plant = (id: string, zip: Buffer, parent: string) => plantCheckpoint(join(worker.dataDir, 'checkpoints'), id, zip, parent);

test('a chain of crafted archives writes nothing outside the new session', async () => {
  const up = '../'.repeat(12) + outside.slice(1);
  const parent = await zipOf(
    [
      ['workspace/abs', 'symlink', outside],
      ['workspace/rel', 'symlink', up],
      ['env/abs', 'symlink', outside],
      ['workspace/same', 'symlink', outside],
      ['workspace/same/viafile', 'file', 'same archive'],
      ['workspace/dup', 'file', 'one'],
      ['workspace/dup', 'symlink', join(outside, 'dup')],
      ['workspace/dup', 'file', 'two'],
    ],
    [],
  );
  const child = await zipOf(
    [
      ['workspace/abs', 'directory'],
      ['workspace/abs/pwned', 'file', 'through abs'],
      ['workspace/rel/pwned-rel', 'file', 'through rel'],
      ['workspace/rel/sub', 'directory'],
      ['workspace/rel/sub/deep', 'file', 'through rel dir'],
      ['env/abs/pwned-env', 'file', 'through env'],
      ['workspace/abs/victim', 'symlink', '/etc/shadow'],
    ],
    ['workspace/abs/victim', 'workspace/rel/victim', 'env/abs/victim'],
  );
  const grandchild = await zipOf([['workspace/abs/victim', 'file', 'overwritten']], ['workspace/rel']);
  plant('checkpoint-evil-parent', parent, '');
  plant('checkpoint-evil-child', child, 'checkpoint-evil-parent');
  plant('checkpoint-evil-grandchild', grandchild, 'checkpoint-evil-child');

  let said = 'OK';
  let sessionId = '';
  try {
    sessionId = (await worker.sessions.restoreSession({ checkpointId: 'checkpoint-evil-grandchild' })).sessionId;
  } catch (err) {
    said = `${Status[(err as ClientError).code]}: ${(err as ClientError).details}`;
  }
  console.log(`restore answered ${said}`);
  assert.deepEqual(readdirSync(outside), ['victim'], said);
  assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'untouched');
  if (sessionId) {
    const ls = await callTool(worker.tasks, sessionId, 'run.shell', { command: 'cd /workspace && find . -printf "%y %p %l\\n" | sort' });
    console.log(ls.result?.outputs.stdout);
  }
});

test('a directory/file clash in one archive writes nothing outside either', async () => {
  const clash = await zipOf(
    [
      ['workspace/link', 'symlink', outside],
      ['workspace/clash', 'directory'],
      ['workspace/clash', 'file', 'clash file'],
      ['workspace/clash/inner', 'file', 'clash inner'],
      ['workspace/link', 'directory'],
      ['workspace/link/x', 'file', 'via link'],
    ],
    [],
  );
  plant('checkpoint-evil-clash', clash, '');
  const said = await worker.sessions.restoreSession({ checkpointId: 'checkpoint-evil-clash' }).then(
    () => 'OK',
    (err: ClientError) => `${Status[err.code]}: ${err.details}`,
  );
  console.log(`restore answered ${said}`);
  assert.deepEqual(readdirSync(outside), ['victim'], said);
});

test('an archive naming .., an absolute path or a path outside workspace/ and env/ is refused', async () => {
  for (const [i, name] of ['workspace/../x', '/tmp/x', 'x', 'workspace/a/../../x', 'workspace/./x', 'workspace//x'].entries()) {
    plant(`checkpoint-refused-${i}`, await zipOf([[name, 'file', 'x']], []), '');
    const [code, details]: [Status, string] = await worker.sessions.restoreSession({ checkpointId: `checkpoint-refused-${i}` }).then(
      () => [Status.OK, ''],
      (err: ClientError) => [err.code, err.details],
    );
    assert.equal(code, Status.INVALID_ARGUMENT, `${name}: ${Status[code]} ${details}`);
  }
  assert.deepEqual(readdirSync(outside), ['victim']);
});
