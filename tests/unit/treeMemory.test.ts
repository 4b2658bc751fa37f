import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SessionTrees } from '../../src/sessions/sessionTrees.js';
import { keptBytes, TreeMemory } from '../../src/sessions/treeMemory.js';
import type { Tree, TreeEntry } from '../../src/storage/fileTree.js';
import { fakeExtrasStore as fakeStore } from '../helpers/fakeExtrasStore.js';

// File trees held in the worker's heap, all sessions together: checkpoints in progress hold
// their share before they build a tree (in line), kept trees are dropped least recently used
// first to make room, and a session whose trees were dropped reads them back from their files,
// the same trees, so its next incremental checkpoint is made against the right parent.

const settled = async (promise: Promise<unknown>) => (await Promise.race([promise.then(() => true), new Promise((r) => setImmediate(r, false))])) as boolean;

test('kept trees are dropped least recently used first, for work in progress and for each other', async () => {
  const memory = new TreeMemory(100);
  const dropped: string[] = [];
  const a = {};
  const b = {};
  const c = {};
  memory.keep(a, 30, () => dropped.push('a'));
  memory.keep(b, 30, () => dropped.push('b'));
  memory.touch(a); // b is now the least recently used
  const release = await memory.hold(50);
  assert.deepEqual(dropped, ['b'], 'room for the work: the least recently used tree went');
  assert.deepEqual(memory.usage, { working: 50, kept: 30 });
  memory.keep(c, 30, () => dropped.push('c'));
  assert.deepEqual(dropped, ['b', 'a'], 'a newly kept tree is dropped last');
  const waiting = memory.hold(60);
  assert.equal(await settled(waiting), false, 'work that does not fit beside work in progress waits');
  release();
  release(); // given back once only
  assert.equal(await settled(waiting), true);
  assert.deepEqual(dropped, ['b', 'a', 'c']);
  assert.deepEqual(memory.usage, { working: 60, kept: 0 });
  memory.keep(a, 500, () => dropped.push('a too large'));
  assert.deepEqual(dropped.at(-1), 'a too large', 'a tree larger than the room left is not kept at all');
  memory.forget(b); // forgetting what is not kept is nothing
  assert.deepEqual(memory.usage, { working: 60, kept: 0 });
});

test('work larger than the whole goes alone; forgotten trees free their room', async () => {
  const memory = new TreeMemory(100);
  const owner = {};
  memory.keep(owner, 40, () => assert.fail('forgotten, never dropped'));
  memory.forget(owner);
  const release = await memory.hold(250);
  assert.deepEqual(memory.usage, { working: 250, kept: 0 });
  const next = memory.hold(1);
  assert.equal(await settled(next), false);
  release();
  assert.equal(await settled(next), true);
});

const entry = (size: number): TreeEntry => ({ type: 'file', size, mtimeMs: 1000 + size, ctimeMs: 2000, ino: size, mode: 0o644 });
const tree = (n: number, seed = 0): Tree => new Map(Array.from({ length: n }, (_, i) => [`workspace/f${i}`, entry(i + seed)] as const));

test("a session's trees dropped for another's are read back the same; an adopted session's when first needed", async () => {
  const store = fakeStore();
  const one = tree(100);
  const memory = new TreeMemory(keptBytes(one) * 2);
  const first = new SessionTrees(store, 's1', memory);
  const restored = tree(100, 7);
  await first.rememberBaseline(restored);
  await first.rememberCheckpoint({ id: 'c1', tree: one, chainLength: 1, chainSize: { entries: 100, pathBytes: 7 } });
  assert.equal(memory.usage.kept, keptBytes(restored) + keptBytes(one));

  const second = new SessionTrees(store, 's2', memory);
  await second.rememberCheckpoint({ id: 'c9', tree: tree(150, 3), chainLength: 1, chainSize: { entries: 150, pathBytes: 7 } });
  assert.equal(memory.usage.kept, keptBytes(tree(150, 3)), "the first session's trees were dropped for the second's");
  assert.deepEqual(await first.lastCheckpoint(), { id: 'c1', chainLength: 1, chainSize: { entries: 100, pathBytes: 7 }, tree: one }, 'read back from its file');
  assert.deepEqual(await first.baselineTree(), restored);

  // A fork takes its source's trees (their files copied), dropped or not.
  const fork = new SessionTrees(store, 's3', memory);
  await fork.inherit(first);
  await new SessionTrees(store, 's4', memory).rememberCheckpoint({ id: 'c10', tree: tree(200), chainLength: 1, chainSize: { entries: 200, pathBytes: 7 } });
  assert.deepEqual(await fork.lastCheckpoint(), { id: 'c1', chainLength: 1, chainSize: { entries: 100, pathBytes: 7 }, tree: one });

  // Adopted: nothing read until asked; a tree file naming another checkpoint is no parent.
  const adopted = new SessionTrees(store, 's1', memory);
  adopted.adopt('c1');
  assert.equal(memory.usage.kept, keptBytes(one), "the fork's alone: nothing read at adoption");
  assert.deepEqual((await adopted.lastCheckpoint())?.tree, one);
  assert.equal(memory.usage.kept, 2 * keptBytes(one), 'read when asked for, and kept');
  const stale = new SessionTrees(store, 's1', memory);
  stale.adopt('c2');
  assert.equal(await stale.lastCheckpoint(), undefined);
  assert.equal(stale.lastCheckpointId, 'c2');
  assert.deepEqual(await new SessionTrees(store, 's5', memory).baselineTree(), new Map(), 'a new session: empty');
});

test('a tree read back that does not fit beside the work in progress is still given to its caller', async () => {
  const store = fakeStore();
  const restored = tree(100, 7);
  const memory = new TreeMemory(keptBytes(restored) * 2);
  const trees = new SessionTrees(store, 's', memory);
  await trees.rememberBaseline(restored);
  await trees.rememberCheckpoint({ id: 'c1', tree: tree(50), chainLength: 1, chainSize: { entries: 50, pathBytes: 7 } });
  const release = await memory.hold(memory.limitBytes); // a checkpoint going alone: every kept tree dropped
  assert.equal(memory.usage.kept, 0);
  assert.deepEqual(await trees.baselineTree(), restored, 'the baseline (a full checkpoint diffs against it)');
  assert.deepEqual((await trees.lastCheckpoint())?.tree, tree(50));
  assert.equal(memory.usage.kept, 0, 'neither kept');
  release();
});
