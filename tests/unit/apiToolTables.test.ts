import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { everyTool } from '../../src/tools/index.js';

const API_MD = new URL('../../../docs/api.md', import.meta.url);
const ARGUMENTS_HEADER = '| tool | argument | required | meaning |';
const OUTPUTS_HEADER = '| tool | output | when |';

/** docs/api.md's "### Tools" section, up to the next section. */
function toolsSection(): string {
  const markdown = readFileSync(API_MD, 'utf8');
  const start = markdown.indexOf('\n### Tools\n');
  assert.ok(start >= 0, 'docs/api.md has a "### Tools" section');
  const end = markdown.indexOf('\n### ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

/**
 * The body rows of the table under `header`, each as its tools and its other cells. A tool cell
 * may name several tools (`run.python`, `run.node`); an empty one continues the row above's.
 */
function tableRows(section: string, header: string): { tools: string[]; cells: string[] }[] {
  const lines = section.split('\n');
  const at = lines.indexOf(header);
  assert.ok(at >= 0, `docs/api.md's Tools section has a table headed ${header}`);
  const rows: { tools: string[]; cells: string[] }[] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    const [toolCell, ...cells] = line
      .replace(/^\||\|$/g, '')
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim());
    const named = [...toolCell!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    rows.push({ tools: named.length > 0 ? named : (rows.at(-1)?.tools ?? []), cells });
  }
  return rows;
}

/** A name cell as the row's key: `code` is code; anything else (two names in one cell) stays visible as it is. */
const nameOf = (cell: string) => cell.replace(/^`([^`]+)`$/, '$1');

/** What is wrong with the documented rows against the declared ones: each missing, extra or repeated row. */
function differences(table: string, documented: string[], declared: string[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const row of documented) {
    if (!declared.includes(row)) problems.push(`docs/api.md's ${table} table has an extra row: ${row}`);
    else if (seen.has(row)) problems.push(`docs/api.md's ${table} table repeats the row: ${row}`);
    seen.add(row);
  }
  for (const row of declared) if (!seen.has(row)) problems.push(`docs/api.md's ${table} table lacks the row: ${row}`);
  return problems;
}

const TOOLS = everyTool();

test('every language has its run tool among the tools the tables are checked against, each once', () => {
  const names = TOOLS.map((t) => t.name);
  for (const runner of ['run.python', 'run.node', 'run.go']) assert.ok(names.includes(runner), runner);
  assert.equal(new Set(names).size, names.length);
});

test("docs/api.md's tool argument table is each tool's declared arguments: one row each, required as declared", () => {
  const documented = tableRows(toolsSection(), ARGUMENTS_HEADER).flatMap(({ tools, cells: [argument = '', required = ''] }) => {
    const flag = required === 'yes' ? 'required' : required === 'no' ? 'optional' : `required "${required}"`;
    return tools.map((tool) => `${tool} ${nameOf(argument)} (${flag})`);
  });
  const declared = TOOLS.flatMap(({ name, arguments: { required, optional } }) => [
    ...required.map((argument) => `${name} ${argument} (required)`),
    ...optional.map((argument) => `${name} ${argument} (optional)`),
  ]);
  assert.deepEqual(differences('argument', documented, declared), []);
});

test("docs/api.md's tool output table is each tool's declared outputs: one row each", () => {
  const documented = tableRows(toolsSection(), OUTPUTS_HEADER).flatMap(({ tools, cells: [output = ''] }) => tools.map((tool) => `${tool} ${nameOf(output)}`));
  const declared = TOOLS.flatMap(({ name, outputs }) => outputs.map((output) => `${name} ${output}`));
  assert.deepEqual(differences('output', documented, declared), []);
});

test('a missing, extra or repeated row is named', () => {
  assert.deepEqual(differences('output', ['echo message', 'echo message', 'echo extra'], ['echo message', 'fs.list entries']), [
    "docs/api.md's output table repeats the row: echo message",
    "docs/api.md's output table has an extra row: echo extra",
    "docs/api.md's output table lacks the row: fs.list entries",
  ]);
});
