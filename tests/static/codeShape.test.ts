import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { functionShapes, sourceFiles } from '../helpers/codeShape.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
/** Past this a function must say, in a comment above it, why it is one piece. */
const LONG_FUNCTION_LINES = 60;

test(`no function in src/ runs over ${LONG_FUNCTION_LINES} lines without a comment saying why`, () => {
  const long = functionShapes(ROOT).filter((f) => f.lines > LONG_FUNCTION_LINES && !f.commented);
  assert.deepEqual(
    long.map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`),
    [],
  );
});

test('runTask, the heart of task execution, reads in one screen (at most 40 lines)', () => {
  const runTask = functionShapes(ROOT).find((f) => f.file === 'src/tasks/runTask.ts' && f.name === 'runTask');
  assert.ok(runTask, 'src/tasks/runTask.ts has a runTask');
  assert.ok(runTask.lines <= 40, `runTask is ${runTask.lines} lines`);
});

test('client-visible errors are made only by the catalogue in src/errors.ts', () => {
  const makers = sourceFiles(join(ROOT, 'src'))
    .filter((file) => !file.endsWith('/src/errors.ts'))
    .filter((file) => /new (WorkerError|ServerError)\(/.test(readFileSync(file, 'utf8')));
  assert.deepEqual(makers, []);
});
