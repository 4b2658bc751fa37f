import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { README_MARKERS, withBenchResults } from '../../bench/readmeTable.js';

const root = new URL('../../../', import.meta.url);

test("the README's bench table is bench/results.md, as make bench wrote it (never copied by hand)", () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const results = readFileSync(new URL('bench/results.md', root), 'utf8');
  assert.equal(withBenchResults(readme, results), readme);
  assert.throws(() => withBenchResults('no markers', results), /lacks the bench markers/);
  assert.ok(readme.includes(README_MARKERS.start) && readme.includes(README_MARKERS.end));
});
