import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { asCheckoutModule, typescriptSnippets } from '../helpers/markdownSnippets.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

test("every TypeScript example in README.md and docs/ compiles against this checkout's sources", () => {
  const snippets = typescriptSnippets(ROOT);
  assert.ok(snippets.length >= 2, 'the README has its client examples');
  // Outside the checkout (the tier may run as a user who cannot write it), importing it by path.
  const dir = mkdtempSync(join(tmpdir(), 'snippets-'));
  try {
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    const files = snippets.map((snippet, i) => {
      const file = join(dir, `snippet-${i}.ts`);
      // `export {}` makes each a module, so top-level await and names of one do not meet another's.
      writeFileSync(file, `${asCheckoutModule(snippet.code, ROOT.replace(/\/$/, ''))}\nexport {};\n`);
      return file;
    });
    const program = ts.createProgram(files, {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
      typeRoots: [join(ROOT, 'node_modules/@types')],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const file = d.file ? (snippets[files.indexOf(d.file.fileName)]?.where ?? d.file.fileName) : '';
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      return `${file}:${line} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    assert.deepEqual(problems, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
