import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RememberedTree } from '../../src/sessions/rememberedTree.js';
import type { Tree, TreeEntry } from '../../src/storage/fileTree.js';
import { fakeExtrasStore as fakeStore } from '../helpers/fakeExtrasStore.js';

// A checkpoint's tree is kept on disk as a base written whole and the changes since it: what a
// restarted worker reads back must be the tree remembered last, entry for entry, whatever
// sequence of checkpoints led there (and a fork's saves are its own).

const entry = (size: number, extra: Partial<TreeEntry> = {}): TreeEntry => ({
  type: 'file',
  size,
  mtimeMs: 1000 + size,
  ctimeMs: 2000,
  ino: size,
  mode: 0o644,
  ...extra,
});

const tree = (n: number, seed = 0): Tree => new Map(Array.from({ length: n }, (_, i) => [`workspace/f${i}`, entry(i + seed)] as const));

test('a tree saved as changes since its base reads back whole; the base is written again past a quarter changed', async () => {
  const store = fakeStore();
  const saved = new RememberedTree(store, 's');
  const first = tree(5000);
  await saved.save('c1', 1, { entries: 10, pathBytes: 7 }, first, undefined);
  const second = new Map(first);
  second.set('workspace/f1', entry(1, { ctimeMs: 3000 })); // a ctime alone changed
  second.delete('workspace/f2');
  second.set('workspace/new', entry(7, { racy: true }));
  await saved.save('c2', 2, { entries: 20, pathBytes: 7 }, second, first);
  assert.deepEqual(store.writes, ['checkpoint-tree-v2.json', 'checkpoint-tree-changes-v2.json']);
  assert.ok(store.files.get('s/checkpoint-tree-changes-v2.json')!.length < 500, 'the changes alone');
  assert.deepEqual(await new RememberedTree(store, 's').load(), { id: 'c2', chainLength: 2, chainSize: { entries: 20, pathBytes: 7 }, tree: second });

  // Most entries changed: the base is written whole again; the old changes file is passed over.
  const third = tree(5000, 1);
  await saved.save('c3', 3, { entries: 30, pathBytes: 7 }, third, second);
  assert.equal(store.writes.at(-1), 'checkpoint-tree-v2.json');
  assert.deepEqual(await new RememberedTree(store, 's').load(), { id: 'c3', chainLength: 3, chainSize: { entries: 30, pathBytes: 7 }, tree: third });
});

test('without the previous tree a save writes the whole base; a fork saves apart from its source', async () => {
  const store = fakeStore();
  const source = new RememberedTree(store, 'src');
  const start = tree(100);
  await source.save('c1', 1, { entries: 10, pathBytes: 7 }, start, undefined);
  const fork = new RememberedTree(store, 'fork');
  fork.inherit(source);
  store.files.set('fork/checkpoint-tree-v2.json', store.files.get('src/checkpoint-tree-v2.json')!);
  const inSource = new Map(start).set('workspace/only-source', entry(1));
  const inFork = new Map(start).set('workspace/only-fork', entry(2));
  await source.save('c2', 2, { entries: 20, pathBytes: 7 }, inSource, start);
  await fork.save('f2', 2, { entries: 20, pathBytes: 7 }, inFork, start);
  const more = new Map(inSource).set('workspace/later', entry(3));
  await source.save('c3', 3, { entries: 30, pathBytes: 7 }, more, inSource);
  assert.deepEqual(await new RememberedTree(store, 'src').load(), { id: 'c3', chainLength: 3, chainSize: { entries: 30, pathBytes: 7 }, tree: more });
  assert.deepEqual(await new RememberedTree(store, 'fork').load(), { id: 'f2', chainLength: 2, chainSize: { entries: 20, pathBytes: 7 }, tree: inFork });
  store.writes.length = 0;
  await source.save('c4', 1, { entries: 10, pathBytes: 7 }, start, undefined);
  assert.deepEqual(store.writes, ['checkpoint-tree-v2.json']);
});

test('generated sequences of checkpoints: what is read back is the tree saved last', async () => {
  const paths = fc.constantFrom(...Array.from({ length: 40 }, (_, i) => `workspace/p${i}`));
  const step = fc.record({
    set: fc.array(fc.tuple(paths, fc.nat(5)), { maxLength: 8 }),
    remove: fc.array(paths, { maxLength: 8 }),
    withPrevious: fc.boolean(),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
      const store = fakeStore();
      const saved = new RememberedTree(store, 's');
      let previous: Tree | undefined;
      let current: Tree = new Map();
      for (const [i, { set, remove, withPrevious }] of steps.entries()) {
        current = new Map(current);
        for (const [path, size] of set) current.set(path, entry(size));
        for (const path of remove) current.delete(path);
        await saved.save(`c${i}`, i + 1, { entries: i + 10, pathBytes: 7 }, current, withPrevious ? previous : undefined);
        previous = current;
        assert.deepEqual(await new RememberedTree(store, 's').load(), {
          id: `c${i}`,
          chainLength: i + 1,
          chainSize: { entries: i + 10, pathBytes: 7 },
          tree: current,
        });
      }
    }),
    { numRuns: 200 },
  );
});

test("a tree an earlier release remembered does not know its chain's entries: past any bound", async () => {
  const store = fakeStore();
  store.files.set('s/checkpoint-tree-v2.json', JSON.stringify({ id: 'c1', chainLength: 4, entries: [...tree(3)] }));
  assert.deepEqual(await new RememberedTree(store, 's').load(), {
    id: 'c1',
    chainLength: 4,
    chainSize: { entries: Number.MAX_SAFE_INTEGER, pathBytes: Number.MAX_SAFE_INTEGER },
    tree: tree(3),
  });
});
