import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { importCircles, importGraph, layeringViolations, type ImportGraph } from '../helpers/importGraph.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

test('every import in src/ goes down the layers (or stays in its directory)', () => {
  assert.deepEqual(layeringViolations(importGraph(ROOT)), []);
});

test('src/ has no import circle', () => {
  assert.deepEqual(importCircles(importGraph(ROOT)), []);
});

test('the layering check catches an upward import, a top-level file importing a sibling up, and the client reaching into the server', () => {
  const graph: ImportGraph = new Map([
    ['storage/fileTree.ts', ['sessions/session.ts']],
    ['errors.ts', ['config.ts']],
    ['client/runTask.ts', ['errors.ts', '../gen/codegen/v1/common.ts']],
    ['tools/echo.ts', ['tools/tool.ts', 'sandbox/runProcess.ts', '../gen/codegen/v1/common.ts']],
  ]);
  assert.deepEqual(layeringViolations(graph), ['storage/fileTree.ts -> sessions/session.ts', 'errors.ts -> config.ts', 'client/runTask.ts -> errors.ts']);
});

test('the circle check finds a circle through three files', () => {
  const graph: ImportGraph = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts']],
    ['c.ts', ['a.ts']],
    ['d.ts', ['a.ts']],
  ]);
  assert.deepEqual(importCircles(graph), [['a.ts', 'b.ts', 'c.ts']]);
});
