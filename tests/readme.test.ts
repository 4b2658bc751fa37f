import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { asCheckoutModule, typescriptSnippets } from './helpers/markdownSnippets.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// The README's first example (plain nice-grpc against the generated code) run as written, against
// a real worker: only the address and the import base (this checkout's compiled gen/) differ.
// The typed-client example runs in client-package.test.ts, from the packed package.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);
let worker: RunningWorker;

before(async () => {
  worker = await startWorker();
});
after(async () => worker?.stop());

test("the README's nice-grpc example runs as written: it writes main.py, streams its output live and destroys its session", async () => {
  const snippet = typescriptSnippets(ROOT).find((s) => s.code.includes("from 'nice-grpc'"));
  assert.ok(snippet, 'the README has a plain nice-grpc example');
  const source = asCheckoutModule(snippet.code, join(ROOT, 'dist').replace(/\/$/, '')).replace("'localhost:50052'", JSON.stringify(worker.address));
  const { outputText } = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } });
  const dir = await mkdtemp(join(tmpdir(), 'readme-'));
  try {
    await writeFile(join(dir, 'package.json'), '{ "type": "module" }');
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    await writeFile(join(dir, 'example.js'), outputText);
    const { stdout } = await run(process.execPath, [join(dir, 'example.js')], { timeout: 60_000 });
    assert.equal(stdout, 'stdout hi\nhi\n\n', "the live log line, then the result's stdout as printed");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const capacity = await worker.sessions.getCapacity({});
  assert.equal(capacity.activeSessions, 0, 'the example destroyed its session');
});
