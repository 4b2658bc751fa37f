import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_CHAIN_SIZE, MAX_INCREMENTAL_CHAIN, sinceParent } from '../../src/sessions/checkpoints.js';
import type { RememberedCheckpoint } from '../../src/sessions/rememberedTree.js';
import type { SessionTrees } from '../../src/sessions/sessionTrees.js';
import type { Tree, TreeEntry } from '../../src/storage/fileTree.js';

// A restore holds every entry of a chain's archives at once: a session rewriting all its files
// between incremental checkpoints would make a chain of a hundred archives of half a million
// entries (or 64 MiB of paths) each. An incremental checkpoint continues its chain only while
// the chain's archives name at most MAX_CHAIN_SIZE in all; past that (or past
// MAX_INCREMENTAL_CHAIN archives, or for a tree remembered by an earlier release, which does not
// know its chain's size) it is a full one, whose chain starts again at its own size.

const entry = (size: number): TreeEntry => ({ type: 'file', size, mtimeMs: 1000 + size, ctimeMs: 2000, ino: size, mode: 0o644 });
/** `n` files whose paths are `workspace/f<i>` padded to 20 bytes. */
const tree = (n: number): Tree => new Map(Array.from({ length: n }, (_, i) => [`workspace/f${i}`.padEnd(20, '_'), entry(i)] as const));
const sessionWith = (last: RememberedCheckpoint) => ({ trees: { lastCheckpoint: async () => last } as unknown as SessionTrees });

test("an incremental checkpoint continues its chain while the chain's archives stay within MAX_CHAIN_SIZE", async () => {
  const before = tree(100);
  const now = new Map(before);
  for (const path of [...now.keys()].slice(0, 10)) now.set(path, entry(5000));
  const last = { id: 'c1', chainLength: 3, chainSize: { entries: MAX_CHAIN_SIZE.entries - 10, pathBytes: MAX_CHAIN_SIZE.pathBytes - 200 }, tree: before };
  const fits = await sinceParent(sessionWith(last), now, true);
  assert.equal(fits.parent, last);
  assert.equal(fits.changed.length, 10);
  assert.deepEqual(fits.chainSize, MAX_CHAIN_SIZE, 'exactly at the bound');

  const fullSize = { entries: 100, pathBytes: 2000 };
  for (const [why, chainSize] of [
    ['one entry too many', { entries: MAX_CHAIN_SIZE.entries - 9, pathBytes: 0 }],
    ['one byte of paths too many', { entries: 0, pathBytes: MAX_CHAIN_SIZE.pathBytes - 199 }],
    ['an earlier release: unknown', { entries: Number.MAX_SAFE_INTEGER, pathBytes: Number.MAX_SAFE_INTEGER }],
  ] as const) {
    const full = await sinceParent(sessionWith({ ...last, chainSize }), now, true);
    assert.equal(full.parent, undefined, why);
    assert.equal(full.changed.length, 100, why);
    assert.deepEqual(full.chainSize, fullSize, `${why}: a chain of its own`);
  }
  assert.equal((await sinceParent(sessionWith({ ...last, chainLength: MAX_INCREMENTAL_CHAIN }), now, true)).parent, undefined);
  assert.equal((await sinceParent(sessionWith(last), now, false)).parent, undefined, 'asked for a full one');
});
