import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { runTask, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

let worker: RunningWorker;
let sessionId: string;
const outsideName = `/tmp/codegen-escape-${randomBytes(6).toString('hex')}`;

before(async () => {
  worker = await startWorker();
  ({ sessionId } = await worker.sessions.createSession({ workspaceId: 'paths' }));
  // Symlinks made by the session's own code: out of the workspace, and one that stays inside.
  await runTool(worker.tasks, sessionId, 'run.python', {
    code: [
      'import os',
      'os.symlink("/etc", "etc_link")',
      'os.symlink("/etc/passwd", "passwd_link")',
      'os.symlink("/tmp", "tmp_link")',
      `os.symlink("${outsideName}", "dangling_out")`,
      'os.mkdir("inner")',
      'open("inner/ok.txt", "w").write("fine")',
      'os.symlink("inner", "inner_link")',
      'os.symlink("../../..", "inner/up")',
    ].join('\n'),
  });
});

after(async () => worker?.stop());

const BAD_PATHS: [string, RegExp][] = [
  ['/etc/passwd', /absolute paths are not allowed/],
  ['../x', /'\.\.' segments are not allowed/],
  ['a/../../x', /'\.\.' segments are not allowed/],
  ['a/..', /'\.\.' segments are not allowed/],
  ['a\0b', /NUL byte/],
  ['etc_link/passwd', /outside the workspace \(through a symlink\)/],
  ['passwd_link', /outside the workspace/],
  ['etc_link', /outside the workspace/],
  ['inner/up/etc', /outside the workspace/],
  [`tmp_link/${outsideName.slice(5)}`, /outside the workspace/],
  ['dangling_out', /outside the workspace/],
];

for (const toolName of ['fs.read', 'fs.write', 'fs.list']) {
  test(`${toolName} refuses paths that leave the workspace with INVALID_ARGUMENT`, async () => {
    for (const [path, reason] of BAD_PATHS) {
      const args: Record<string, string> = toolName === 'fs.write' ? { path, contents: 'escaped' } : { path };
      const run = await runTask(worker.tasks, { sessionId, toolName, arguments: args });
      assert.equal(run.code, Status.INVALID_ARGUMENT, `${toolName} ${JSON.stringify(path)} gave ${Status[run.code]} ${run.error?.details ?? ''}`);
      assert.match(run.error!.details, reason, `${toolName} ${JSON.stringify(path)}`);
    }
    assert.equal(existsSync(outsideName), false, 'nothing was written outside');
  });
}

test('symlinks that stay inside the workspace work; the root lists as "" and "."', async () => {
  assert.equal((await runTool(worker.tasks, sessionId, 'fs.read', { path: 'inner_link/ok.txt' })).contents, 'fine');
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'inner_link/new.txt', contents: 'via link' });
  assert.equal((await runTool(worker.tasks, sessionId, 'fs.read', { path: 'inner/new.txt' })).contents, 'via link');
  const root = await runTool(worker.tasks, sessionId, 'fs.list', { path: '' });
  assert.equal(root.entries, 'dangling_out,etc_link,inner/,inner_link,passwd_link,tmp_link');
  assert.equal((await runTool(worker.tasks, sessionId, 'fs.list', { path: '.' })).entries, root.entries);
  assert.equal((await runTool(worker.tasks, sessionId, 'fs.list', { path: './inner/' })).entries, 'new.txt,ok.txt,up');
});

test('fs.write creates parent directories; fs.read of a directory and fs.list of a file are refused', async () => {
  const written = await runTool(worker.tasks, sessionId, 'fs.write', { path: 'deep/er/still/file.txt', contents: 'héllo' });
  assert.equal(written.bytes_written, '6');
  assert.equal((await runTool(worker.tasks, sessionId, 'fs.list', { path: 'deep/er' })).entries, 'still/');
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'deep' } })).code, Status.INVALID_ARGUMENT);
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.list', arguments: { path: 'deep/er/still/file.txt' } })).code, Status.INVALID_ARGUMENT);
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'deep', contents: 'x' } })).code, Status.INVALID_ARGUMENT);
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: '', contents: 'x' } })).code, Status.INVALID_ARGUMENT);
});

test('binary files round-trip byte for byte with encoding=base64; reading them as utf-8 names base64', async () => {
  const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(100_000)]);
  const written = await runTool(worker.tasks, sessionId, 'fs.write', { path: 'blob.bin', contents: bytes.toString('base64'), encoding: 'base64' });
  assert.equal(written.bytes_written, String(bytes.length));
  const read = await runTool(worker.tasks, sessionId, 'fs.read', { path: 'blob.bin', encoding: 'base64' });
  assert.equal(read.encoding, 'base64');
  assert.equal(read.size, String(bytes.length));
  assert.ok(Buffer.from(read.contents!, 'base64').equals(bytes));
  const check = await runTool(worker.tasks, sessionId, 'run.python', {
    code: 'import hashlib; print(hashlib.sha256(open("blob.bin","rb").read()).hexdigest())',
  });
  assert.equal(check.stdout?.trim(), (await import('node:crypto')).createHash('sha256').update(bytes).digest('hex'));
  const asText = await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'blob.bin' } });
  assert.equal(asText.code, Status.INVALID_ARGUMENT);
  assert.match(asText.error!.details, /not valid UTF-8 text; read it with encoding=base64/);
  // Large contents are decoded from the request's bytes in slices: held as strictly as small ones.
  const text = bytes.toString('base64');
  for (const [what, bad] of [
    ['a character outside the alphabet mid-way', `${text.slice(0, 70_001)}*${text.slice(70_002)}`],
    ['padding mid-way', `${text.slice(0, 40_000)}====${text.slice(40_004)}`],
    ['MIME line breaks', text.replace(/(.{76})/g, '$1\n')],
  ]) {
    const refused = await runTask(worker.tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'bad.bin', contents: bad, encoding: 'base64' } });
    assert.equal(refused.code, Status.INVALID_ARGUMENT, what);
    assert.match(refused.error!.details, /not valid base64/, what);
  }
  assert.equal((await runTask(worker.tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'bad.bin' } })).code, Status.NOT_FOUND, 'nothing written');
});
