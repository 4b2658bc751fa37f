import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { isUtf8 } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { SessionFiles, Status, type WorkerClient } from '../../src/client/index.js';
import { callTool, runTool } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// Found by an attack on cp, fs.write append and the package-source probe (a helper session with
// fresh eyes): each test failed on the code before its fix.

let worker: RunningWorker;
let sessionId: string;
const here = mkdtempSync(join(tmpdir(), 'codegen-copy-attacks-'));
before(async () => {
  worker = await startWorker();
  sessionId = (await worker.sessions.createSession({ workspaceId: 'copy-attacks' })).sessionId;
});
after(async () => {
  await worker?.stop();
  rmSync(here, { recursive: true, force: true });
});
const sh = (command: string) => runTool(worker.tasks, sessionId, 'run.shell', { command });
const client = (tasks: WorkerClient['tasks'] = worker.tasks) => ({ ...worker, tasks }) as unknown as WorkerClient;

/** The worker's task client, with `before` run ahead of each fs.read of a later part (session code acting between parts). */
function betweenParts(before: () => Promise<unknown>): WorkerClient['tasks'] {
  let done = false;
  return {
    ...worker.tasks,
    executeTask: async function* (request: Parameters<WorkerClient['tasks']['executeTask']>[0], options?: Parameters<WorkerClient['tasks']['executeTask']>[1]) {
      if (request.toolName === 'fs.read' && request.arguments?.offset !== '0' && !done) {
        done = true;
        await before();
      }
      yield* worker.tasks.executeTask(request, options);
    },
  } as WorkerClient['tasks'];
}

test('a file the session shrinks between parts is not copied torn: ABORTED, and nothing partial is left', async () => {
  writeFileSync(join(here, 'big.bin'), randomBytes(20 * 1024 * 1024));
  await new SessionFiles(client(), sessionId).upload(join(here, 'big.bin'), 'big.bin');
  const dest = mkdtempSync(join(here, 'torn-'));
  const files = new SessionFiles(client(betweenParts(() => sh('truncate -s 4M big.bin'))), sessionId);
  const got = await files.download('big.bin', join(dest, 'big.bin')).catch((e: unknown) => e);
  assert.equal((got as { code?: Status }).code, Status.ABORTED, String(got));
  assert.deepEqual(readdirSync(dest), [], 'no partial file');
});

test('a download that fails leaves no partial file behind', async () => {
  await sh('mkdir -p e && head -c 10000000 /dev/urandom > e/big');
  const dest = mkdtempSync(join(here, 'gone-'));
  const files = new SessionFiles(client(betweenParts(() => sh('rm e/big'))), sessionId);
  const got = await files.download('e', join(dest, 'e')).catch((e: unknown) => e);
  assert.equal((got as { code?: Status }).code, Status.NOT_FOUND, String(got));
  assert.deepEqual(readdirSync(join(dest, 'e')), []);
});

test('a link to a workspace directory is copied as the directory the fs tools follow it to; into an existing local directory, as cp does', async () => {
  await sh('mkdir -p real && printf hi > real/f && ln -sfn real linkdir && printf hello > one.txt');
  const files = new SessionFiles(client(), sessionId);
  await files.download('linkdir', join(here, 'linkdir'));
  assert.equal(readFileSync(join(here, 'linkdir/f'), 'utf8'), 'hi');
  const dest = mkdtempSync(join(here, 'exists-'));
  await files.download('one.txt', dest);
  assert.equal(readFileSync(join(dest, 'one.txt'), 'utf8'), 'hello');
  assert.ok(statSync(dest).isDirectory());
});

// The file gone between the lookup and open(O_CREAT): root made it, and the chown was skipped.
test('fs.write append makes what it makes as the session, even while the session remakes the file', async () => {
  await sh('touch f');
  await runTool(worker.tasks, sessionId, 'run.shell', {
    background: 'true',
    command: `exec python3 -c "
import os, time
end = time.time() + 8
while time.time() < end:
    try:
        if os.stat('f').st_uid == 0: open('ROOT', 'w').write('root-owned f seen')
        os.unlink('f')
    except FileNotFoundError: pass
    time.sleep(0.0005)
    try: os.close(os.open('f', os.O_CREAT|os.O_WRONLY|os.O_EXCL, 0o644))
    except FileExistsError: pass
"`,
  });
  for (let i = 0; i < 600; i++) await callTool(worker.tasks, sessionId, 'fs.write', { path: 'f', contents: 'x', append: 'true' });
  assert.equal((await sh('cat ROOT 2>/dev/null; true')).stdout, '', 'fs.write append left a root-owned file in the workspace');
});

// The probe took the name's first address only: a dual-stack name serving on IPv4 alone was refused.
test('a package source whose name resolves to an address that does not answer first is not refused', () => {
  const dir = mkdtempSync(join(here, 'hosts-'));
  writeFileSync(join(dir, 'hosts'), '::1 dualindex\n127.0.0.1 dualindex\n127.0.0.1 localhost\n');
  const module = new URL('../../src/sandbox/network/sourceReachable.js', import.meta.url).pathname;
  const script = `
    import { createServer } from 'node:http';
    import { unreachable } from '${module}';
    const server = createServer((_, res) => res.end('ok')).listen(0, '127.0.0.1', async () => {
      const port = server.address().port;
      console.log(JSON.stringify({ why: await unreachable('http://dualindex:' + port + '/simple', {}) ?? null }));
      server.close();
    });`;
  // Its own /etc/hosts, in a mount namespace of its own: the host's is untouched.
  const run = spawnSync(
    'unshare',
    ['-m', 'sh', '-c', `mount --bind ${dir}/hosts /etc/hosts && exec "${process.execPath}" --input-type=module -e "$0"`, script],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout.trim()), { why: null });
  assert.ok(existsSync(dir));
});

// Round trip: what is sent in appended parts comes back whole, and read back in parts of any
// size (offset and length) the bytes are the same, every byte once.
test('fs.write append and fs.read offset/length: generated parts come back byte for byte', async () => {
  const files = new SessionFiles(client(), sessionId);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 3000 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 1, maxLength: 8 }),
      async (parts, readSizes) => {
        const path = `rt/${run++}.bin`;
        for (const [i, part] of parts.entries()) await files.write(path, part, { append: i > 0 });
        const sent = Buffer.concat(parts);
        const back: Buffer[] = [];
        let offset = 0;
        for (let i = 0; offset < sent.length || i === 0; i++) {
          const { bytes, fileSize } = await files.readPart(path, offset, readSizes[i % readSizes.length]!);
          assert.equal(fileSize, sent.length);
          back.push(bytes);
          offset += bytes.length;
          if (bytes.length === 0) break;
        }
        assert.ok(Buffer.concat(back).equals(sent));
        assert.equal((await files.readPart(path, sent.length + 5, 10)).bytes.length, 0, 'past the end: nothing');
      },
    ),
    { numRuns: 40 },
  );
});

/** A local tree as `path → contents` (files), `path/` (directories) and `path -> target` (links); names as bytes, in hex where they are not UTF-8. */
function localState(top: string, rel: Buffer[] = []): string[] {
  const dir = Buffer.concat([Buffer.from(top), ...rel.flatMap((n) => [Buffer.from('/'), n])]);
  return readdirSync(dir, { encoding: 'buffer' }).flatMap((name) => {
    const path = [...rel, name];
    const full = Buffer.concat([dir, Buffer.from('/'), name]);
    const shown = path.map((n) => (isUtf8(n) ? n.toString() : `<${n.toString('hex')}>`)).join('/');
    const st = lstatSync(full);
    if (st.isDirectory()) return [`${shown}/`, ...localState(top, path)];
    if (st.isSymbolicLink()) return [`${shown} -> ${readlinkSync(full, 'utf8')}`];
    if (st.isFile()) return [`${shown} = ${createHash('sha256').update(readFileSync(full)).digest('hex')}`];
    return [`${shown} (other)`];
  });
}

test('cp leaves nothing out silently: empty directories are made both ways; links, special files and names that are not UTF-8 are named as skipped', async () => {
  const top = mkdtempSync(join(here, 'mixed-'));
  mkdirSync(join(top, 'empty/inner'), { recursive: true });
  mkdirSync(join(top, "it's here\nand there"));
  writeFileSync(join(top, 'file'), 'data');
  symlinkSync('file', join(top, 'link'));
  spawnSync('mkfifo', [join(top, 'fifo')]);
  writeFileSync(Buffer.concat([Buffer.from(`${top}/`), Buffer.from([0x66, 0xff, 0x2e, 0x74])]), 'latin');
  const files = new SessionFiles(client(), sessionId);
  const up = await files.upload(top, 'mixed');
  assert.equal(up.files, 1);
  assert.equal(up.directories, 2);
  assert.deepEqual(
    up.skipped.map((s) => s.path),
    ['fifo', 'f\uFFFD.t', 'link'].map((n) => join(top, n)),
  );
  assert.match(up.skipped[2]!.reason, /symbolic link/);
  assert.equal(
    (await sh("cd mixed && find . | LC_ALL=C sort | tr '\\n' '|'")).stdout,
    "./|./empty|./empty/inner|./file|./it's here|and there|".replace('./|', '.|'),
  );

  // Back: the same directories; the session's own link, fifo and a name of Latin-1 bytes are named, not dropped.
  await sh('cd mixed && ln -s file back-link && mkfifo back-fifo && touch "$(printf \'caf\\351\')"');
  // fs.list lists that name, with its bytes.
  const latin = (await files.list('mixed')).find((e) => e.nameBytes !== undefined);
  assert.deepEqual([latin?.name, Buffer.from(latin?.nameBytes ?? []).toString('hex')], ['caf\uFFFD', '636166e9']);
  const back = mkdtempSync(join(here, 'back-'));
  const down = await files.download('mixed', join(back, 'mixed'));
  assert.deepEqual(
    down.skipped.map((s) => s.path),
    ['mixed/back-fifo', 'mixed/back-link', 'mixed/caf\uFFFD'],
  );
  assert.deepEqual(localState(join(back, 'mixed')), [
    'empty/',
    'empty/inner/',
    `file = ${createHash('sha256').update('data').digest('hex')}`,
    "it's here\nand there/",
  ]);
});

test('a destination with .. is given to the worker as written (refused), not folded into another path', async () => {
  const top = mkdtempSync(join(here, 'dots-'));
  writeFileSync(join(top, 'f'), 'x');
  const got = await new SessionFiles(client(), sessionId).upload(join(top, 'f'), 'a/../f').catch((e: unknown) => e);
  assert.equal((got as { code?: Status }).code, Status.INVALID_ARGUMENT, String(got));
  const emptyOnly = mkdtempSync(join(here, 'dots-dir-'));
  mkdirSync(join(emptyOnly, 'e'));
  const dirGot = await new SessionFiles(client(), sessionId).upload(emptyOnly, '../out').catch((e: unknown) => e);
  assert.equal((dirGot as { code?: Status }).code, Status.INVALID_ARGUMENT, String(dirGot));
});

// Round trip: generated trees (names with quotes, spaces, newlines and any Unicode; empty
// directories; files of any bytes) sent and fetched back are the same tree.
test('cp round trip: generated trees come back as they were sent', async () => {
  const files = new SessionFiles(client(), sessionId);
  const name = fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 12 })
    .filter((n) => !n.includes('/') && !n.includes('\0') && n !== '.' && n !== '..' && Buffer.byteLength(n) <= 200);
  const tree: fc.Memo<Record<string, unknown>> = fc.memo((depth) =>
    fc.dictionary(name, depth <= 1 ? fc.uint8Array({ maxLength: 2000 }) : fc.oneof(fc.uint8Array({ maxLength: 2000 }), tree(depth - 1)), { maxKeys: 4 }),
  );
  const write = (dir: string, t: Record<string, unknown>) => {
    mkdirSync(dir, { recursive: true });
    for (const [n, v] of Object.entries(t)) {
      if (v instanceof Uint8Array) writeFileSync(join(dir, n), v);
      else write(join(dir, n), v as Record<string, unknown>);
    }
  };
  let run = 0;
  await fc.assert(
    fc.asyncProperty(tree(3), async (t) => {
      const sent = join(here, `rt-sent-${run}`);
      const got = join(here, `rt-got-${run}`);
      write(sent, t);
      const up = await files.upload(sent, `rt-tree-${run}`);
      const down = await files.download(`rt-tree-${run}`, got);
      run++;
      assert.deepEqual([up.skipped, down.skipped], [[], []]);
      assert.deepEqual(localState(got), localState(sent));
    }),
    { numRuns: 8 },
  );
});

// A second attack on cp (a helper session with fresh eyes): trees valid on both sides that were
// not copied, directories reported made that were not in the workspace, and a special file
// neither copied nor named. Each failed before its fix.

test('many empty directories with long names or names of quotes upload: the mkdir batches stay within what run.shell takes', async () => {
  const wide = mkdtempSync(join(here, 'wide-'));
  for (let i = 0; i < 256; i++) mkdirSync(join(wide, `${String(i).padStart(3, '0')}${'d'.repeat(252)}`));
  const quotes = mkdtempSync(join(here, 'quotes-'));
  for (let i = 1; i <= 70; i++) mkdirSync(join(quotes, `${i}${"'".repeat(250)}`));
  const files = new SessionFiles(client(), sessionId);
  assert.equal((await files.upload(wide, 'wide')).directories, 256);
  assert.equal((await files.upload(quotes, 'quotes')).directories, 70);
  assert.equal((await sh('ls wide | wc -l; ls quotes | wc -l')).stdout, '256\n70\n');
});

test('an empty local directory uploads to the workspace root ("" or ".", as cp SESSION: gives it)', async () => {
  const empty = mkdtempSync(join(here, 'empty-top-'));
  const files = new SessionFiles(client(), sessionId);
  for (const root of ['', '.']) assert.deepEqual(await files.upload(empty, root), { files: 0, bytes: 0, directories: 1, skipped: [] });
});

test('a download naming a directory the worker will not list (a path past its length limit) names it and copies the rest', async () => {
  const long = 'n'.repeat(250);
  // Relative mkdir and chdir (the shell keeps the whole path and gives up past PATH_MAX).
  await sh(
    `mkdir deep && echo kept > deep/kept.txt && python3 -c "import os; os.chdir('deep')\nfor _ in range(20): os.mkdir('${long}'); os.chdir('${long}')\nopen('f', 'w').write('x')"`,
  );
  const dest = join(mkdtempSync(join(here, 'deep-')), 'deep');
  const got = await new SessionFiles(client(), sessionId).download('deep', dest);
  assert.equal(readFileSync(join(dest, 'kept.txt'), 'utf8'), 'kept\n');
  assert.equal(got.skipped.length, 1);
  assert.match(got.skipped[0]!.reason, /too long|longer/);
});

test('directories an upload makes are in the workspace: a link the session made out of it is refused, nothing made through it', async () => {
  await sh('ln -s /tmp out');
  const top = mkdtempSync(join(here, 'via-link-'));
  mkdirSync(join(top, 'empty'));
  const got = await new SessionFiles(client(), sessionId).upload(top, 'out').catch((e: unknown) => e);
  assert.equal((got as { code?: Status }).code, Status.INVALID_ARGUMENT, String(got));
  assert.match(String(got), /not a directory in the workspace/);
  assert.equal((await sh('ls /tmp/empty 2>&1 | grep -c "No such"')).stdout, '1\n');
});

test('a FIFO or a device named as the local source is refused at once, nothing sent', async () => {
  const fifo = join(here, 'fifo-source');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const files = new SessionFiles(client(), sessionId);
  for (const source of [fifo, '/dev/urandom']) {
    const got = await files.upload(source, 'special').catch((e: unknown) => e);
    assert.match(String(got), /is not a regular file or directory; nothing was copied/);
  }
  assert.equal((await sh('ls special 2>&1 | grep -c "No such"')).stdout, '1\n');
});
