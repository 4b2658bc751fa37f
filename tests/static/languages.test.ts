import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LANGUAGES } from '../../src/sessions/sessionConfig.js';
import { toolsFor } from '../../src/tools/index.js';

// The README's checklist for adding a language ("Adding a language"), held: each step either
// done for every language or missing for a named one.

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const LANGUAGE_ROOM = join(ROOT, 'src/sandbox/languages');

test('every language has its folder, its Language, its run tool, its offer in the worker, its README line, its CLI help and its end-to-end file; nothing else has a folder', () => {
  const folders = readdirSync(LANGUAGE_ROOM).filter((name) => statSync(join(LANGUAGE_ROOM, name)).isDirectory());
  assert.deepEqual([...folders].sort(), [...LANGUAGES].sort(), 'src/sandbox/languages/ holds one folder per name in sessions/sessionConfig.ts LANGUAGES');
  const worker = readFileSync(join(ROOT, 'src/worker.ts'), 'utf8');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const cli = readFileSync(join(ROOT, 'src/cli.ts'), 'utf8');
  const missing: string[] = [];
  for (const name of LANGUAGES) {
    const files = readdirSync(join(LANGUAGE_ROOM, name));
    if (!files.includes(`${name}Language.ts`)) missing.push(`src/sandbox/languages/${name}/${name}Language.ts`);
    if (!toolsFor(name).has(`run.${name}`)) missing.push(`tools/run${name[0]!.toUpperCase()}${name.slice(1)}.ts in tools/index.ts RUNNERS`);
    if (!worker.includes(`name: '${name}'`)) missing.push(`src/worker.ts languageOffers: { name: '${name}', resolve }`);
    if (!readme.includes(`\`${name}/\``)) missing.push(`README.md Layout: \`${name}/\` under languages/`);
    if (!cli.includes(`run.${name}`)) missing.push(`src/cli.ts help: run.${name}`);
    if (name !== LANGUAGES[0] && !readdirSync(join(ROOT, 'tests')).includes(`${name}.test.ts`)) missing.push(`tests/${name}.test.ts`);
  }
  assert.deepEqual(missing, []);
});
