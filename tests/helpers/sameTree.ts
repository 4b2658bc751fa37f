import assert from 'node:assert/strict';
import type { Tree } from '../../src/storage/fileTree.js';
import { textOf } from '../../src/storage/byteNames.js';

/**
 * Requires `restored` to be `original` as a restore must give it back: the same paths (bytes),
 * types, sizes, modes and link targets; modification times to the microsecond (libuv's futimes
 * truncates to microseconds, and takes seconds as a double: within 2 µs). Inodes and ctimes are
 * the new files' own.
 */
export function assertSameTree(restored: Tree, original: Tree, context = ''): void {
  const shape = (tree: Tree) => [...tree].map(([path, { type, size, mode, target }]) => [textOf(path), JSON.stringify(path), type, size, mode, target]).sort();
  assert.deepEqual(shape(restored), shape(original), `${context}: the same entries`);
  for (const [path, entry] of original) {
    const back = restored.get(path)!;
    assert.ok(Math.abs(back.mtimeMs - entry.mtimeMs) < 0.002, `${context}: ${JSON.stringify(textOf(path))} mtime ${back.mtimeMs} vs ${entry.mtimeMs}`);
  }
}
