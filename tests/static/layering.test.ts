import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { importCircles, importGraph, layeringViolations, type ImportGraph } from '../helpers/importGraph.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

test('every import in src/ goes down the layers (or stays in its directory)', () => {
  assert.deepEqual(layeringViolations(importGraph(ROOT)), []);
});

test('only src/sandbox/process/ starts processes (imports node:child_process)', () => {
  const starters = [...importGraph(ROOT).keys()].filter((file) =>
    /^import (?!type )[^;]*from 'node:child_process'/m.test(readFileSync(join(ROOT, 'src', file), 'utf8')),
  );
  assert.deepEqual(
    starters.filter((file) => !file.startsWith('sandbox/process/')),
    [],
  );
  assert.ok(starters.length > 0, 'the check looks where the starters are');
});

test('src/ has no import circle', () => {
  assert.deepEqual(importCircles(importGraph(ROOT)), []);
});

test('the layering check catches an upward import, a top-level file importing a sibling up, and the client reaching into the server', () => {
  const graph: ImportGraph = new Map([
    ['storage/fileTree.ts', ['sessions/session.ts']],
    ['errors.ts', ['config.ts']],
    ['client/runTask.ts', ['errors.ts', '../gen/codegen/v1/common.ts']],
    ['tools/echo.ts', ['tools/tool.ts', 'sandbox/process/runProcess.ts', '../gen/codegen/v1/common.ts']],
  ]);
  assert.deepEqual(layeringViolations(graph), ['storage/fileTree.ts -> sessions/session.ts', 'errors.ts -> config.ts', 'client/runTask.ts -> errors.ts']);
});

test('inside the sandbox, rooms import down or across themselves only, and a language is imported by itself and the worker alone', () => {
  const graph: ImportGraph = new Map([
    ['sandbox/confine/launcher.ts', ['sandbox/process/processSpec.ts', 'sandbox/confine/cgroups.ts']],
    ['sandbox/process/runProcess.ts', ['sandbox/confine/cgroups.ts']],
    ['sandbox/stray.ts', ['sandbox/process/processSpec.ts']],
    ['sandbox/session/sessionSandbox.ts', ['sandbox/languages/language.ts', 'sandbox/languages/python/zygote.ts']],
    ['sandbox/languages/node/nodeLanguage.ts', ['sandbox/languages/language.ts', 'sandbox/languages/python/requirements.ts']],
    ['sandbox/languages/python/pythonLanguage.ts', ['sandbox/languages/python/requirements.ts', 'sandbox/warm/zygote.ts']],
    ['worker.ts', ['sandbox/languages/python/pythonLanguage.ts']],
    ['tools/pkgInstall.ts', ['sandbox/languages/go/goRequirements.ts']],
  ]);
  assert.deepEqual(layeringViolations(graph), [
    'sandbox/process/runProcess.ts -> sandbox/confine/cgroups.ts',
    'sandbox/stray.ts -> sandbox/process/processSpec.ts',
    'sandbox/session/sessionSandbox.ts -> sandbox/languages/python/zygote.ts',
    'sandbox/languages/node/nodeLanguage.ts -> sandbox/languages/python/requirements.ts',
    'tools/pkgInstall.ts -> sandbox/languages/go/goRequirements.ts',
  ]);
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

test('the S3 SDK loads only when a store is in S3: nothing main.ts imports at start-up imports it', () => {
  // Static value imports only: `import type` is erased, and import('…') waits until it runs.
  const staticImports = (file: string) =>
    [...readFileSync(join(ROOT, 'src', file), 'utf8').matchAll(/^(?:import|export) (?!type )[^;]*?from '([^']+)'/gm)].map((m) => m[1]!);
  const reached = new Set<string>();
  const sdkImporters: string[] = [];
  const visit = (file: string) => {
    if (reached.has(file)) return;
    reached.add(file);
    for (const target of staticImports(file)) {
      if (target.startsWith('@aws-sdk/')) sdkImporters.push(file);
      else if (target.startsWith('.')) visit(join(file, '..', target).replace(/\.js$/, '.ts'));
    }
  };
  visit('main.ts');
  assert.ok(reached.has('worker.ts') && reached.has('storage/checkpointStore.ts'), 'the walk follows the imports');
  assert.deepEqual(sdkImporters, []);
  assert.ok(
    staticImports('storage/s3CheckpointStore.ts').some((t) => t.startsWith('@aws-sdk/')),
    'the check knows what the SDK looks like',
  );
});
