import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { bytesOf } from '../src/storage/byteNames.js';
import { extractArchive, openArchive, restoreDirectoryTimes, writeArchive } from '../src/storage/checkpointArchive.js';
import { diffTrees, scanTree, type Tree } from '../src/storage/fileTree.js';
import { assertSameTree } from './helpers/sameTree.js';
import { make, tree, type Node } from './helpers/generatedTrees.js';

// What a checkpoint reports saved is saved: generated workspaces (names of any bytes Linux allows,
// links pointing anywhere, modes, sizes, times), a full checkpoint, generated edits (content
// changed with size and mtime kept among them), an incremental one; restoring the chain gives
// back the tree as it was, byte for byte. The worker's own archive code on real directories;
// tests/checkpoints.test.ts does the same through a real worker.

// In memory where there is a tmpfs: each round trip fsyncs two archives, and on the disk the
// other end-to-end files share, those waits made this file several times slower.
const scratch = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'codegen-roundtrip-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

type Edit = { op: 'rewrite-same-size-and-mtime' | 'delete' | 'chmod' | 'replace-with-dir' | 'replace-with-file' | 'retarget'; pick: number; value: number };
const edit = fc.record({
  op: fc.constantFrom('rewrite-same-size-and-mtime', 'delete', 'chmod', 'replace-with-dir', 'replace-with-file', 'retarget'),
  pick: fc.nat(),
  value: fc.nat(),
}) as fc.Arbitrary<Edit>;

/** Applies an edit to one of the tree's entries (chosen by `pick` among what the scan saw). */
function apply(root: string, scanned: Tree, e: Edit): void {
  const paths = [...scanned.keys()];
  if (paths.length === 0) return;
  const rel = paths[e.pick % paths.length]!;
  const at = Buffer.concat([Buffer.from(`${root}/`), bytesOf(rel.slice('workspace/'.length))]);
  let st: Stats;
  try {
    st = lstatSync(at);
  } catch {
    return; // gone with an earlier edit (its parent deleted or replaced)
  }
  // Keep directories reachable by the scan (root may enter any mode) and writable by the test.
  if (st.isDirectory()) chmodSync(at, 0o755);
  switch (e.op) {
    case 'rewrite-same-size-and-mtime':
      if (!st.isFile()) return;
      writeFileSync(at, Buffer.alloc(st.size, (e.value % 255) + 1));
      utimesSync(at, st.atimeMs / 1000, st.mtimeMs / 1000); // cp -p, tar x, touch -d: size and mtime as before
      return;
    case 'delete':
      rmSync(at, { recursive: true, force: true });
      return;
    case 'chmod':
      if (st.isSymbolicLink()) return;
      chmodSync(at, [0o600, 0o755, 0o700, 0o444][e.value % 4]!);
      return;
    case 'replace-with-dir':
      rmSync(at, { recursive: true, force: true });
      mkdirSync(at);
      writeFileSync(Buffer.concat([at, Buffer.from('/inner\\x')]), 'new');
      return;
    case 'replace-with-file':
      rmSync(at, { recursive: true, force: true });
      writeFileSync(at, `was ${st.isDirectory() ? 'a directory' : 'something else'}`);
      return;
    case 'retarget':
      if (!st.isSymbolicLink()) return;
      symlinkSync(Buffer.concat([readlinkSync(at, { encoding: 'buffer' }), Buffer.from('x')]), Buffer.concat([at, Buffer.from('~')]));
      rmSync(at);
      renameSync(Buffer.concat([at, Buffer.from('~')]), at);
  }
}

/**
 * Until the file clock has moved past every ctime in `tree` (a probe file's ctime says it: at
 * once where the kernel keeps ctimes fine-grained, within a tick where it is coarse).
 */
async function clockPast(dir: string, tree: Tree): Promise<void> {
  const newest = Math.max(0, ...[...tree.values()].map((e) => e.ctimeMs));
  const probe = join(dir, 'probe');
  for (let i = 0; ; i++) {
    writeFileSync(probe, String(i));
    if (lstatSync(probe).ctimeMs > newest) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

let run = 0;
/**
 * `oldScan`: the full checkpoint's tree is taken as made long before the edits (no entry racy),
 * so every edit must be seen by what the session cannot set back (ctime, inode) alone.
 */
async function roundTrip(top: Node & { kind: 'dir' }, edits: Edit[], oldScan: boolean): Promise<void> {
  const dir = join(scratch, String(run++));
  const source = { workspace: join(dir, 'source', 'workspace'), env: join(dir, 'source', 'env') };
  const target = { workspace: join(dir, 'target', 'workspace'), env: join(dir, 'target', 'env') };
  for (const d of [source.env, target.workspace, target.env]) mkdirSync(d, { recursive: true });
  make(Buffer.from(source.workspace), { ...top, mode: 0o755 });
  try {
    const full = await scanTree(source.workspace, 'workspace/');
    await writeArchive(join(dir, 'full.zip'), source, full, [...full.keys()], [], {});
    if (oldScan) {
      await clockPast(dir, full);
      for (const entry of full.values()) delete entry.racy;
    }
    for (const e of edits) apply(source.workspace, full, e);
    const now = await scanTree(source.workspace, 'workspace/');
    const { changed, deleted } = diffTrees(full, now);
    await writeArchive(join(dir, 'incremental.zip'), source, now, changed, deleted, {});

    const archives = [await openArchive(join(dir, 'full.zip')), await openArchive(join(dir, 'incremental.zip'))];
    for (const archive of archives) await extractArchive(archive, target, { workspace: undefined, env: undefined });
    await restoreDirectoryTimes(archives, target);
    const restored = await scanTree(target.workspace, 'workspace/');
    assertSameTree(restored, now, 'restored chain');
    for (const [rel, entry] of now) {
      if (entry.type !== 'file') continue;
      const name = bytesOf(rel.slice('workspace/'.length));
      const bytes = (root: string) => readFileSync(Buffer.concat([Buffer.from(`${root}/`), name]));
      assert.ok(bytes(target.workspace).equals(bytes(source.workspace)), `the bytes of ${JSON.stringify(rel)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('checkpoint → edits → incremental → restore gives back every generated tree exactly (300 trees)', async () => {
  const seed = Number(process.env.ROUNDTRIP_SEED ?? Date.now() % 2 ** 31);
  console.log(`# checkpoint round trip: seed ${seed} (ROUNDTRIP_SEED=${seed} repeats it)`);
  await fc
    .assert(
      fc.asyncProperty(tree.dir, fc.array(edit, { maxLength: 6 }), fc.boolean(), (top, edits, oldScan) =>
        roundTrip(top as Node & { kind: 'dir' }, edits, oldScan),
      ),
      { numRuns: 300, seed },
    )
    .catch((err: Error) => {
      const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
      throw new Error(`${err.message}\nFailure: ${cause}`);
    });
});
