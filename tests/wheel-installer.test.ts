import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { PYPA_INSTALLER } from '../src/sandbox/languages/python/wheelInstaller.js';

// The wheel store's installer (wheelInstaller.py driving PyPA's installer) against pip, with no
// worker and no sandbox: the same wheels laid out by each into environments of their own,
// compared file by file (tests/helpers/wheelLayouts.py says what is compared and what is masked);
// and every wheel it leaves to pip (exit 3) leaves the environment as it was. pkg-install-store
// compares the two through the worker, sandboxed.

const run = promisify(execFile);
const source = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;
const DRIVER = source('src/sandbox/languages/python/wheelInstaller.py');
const LAYOUTS = source('tests/helpers/wheelLayouts.py');

interface Wheel {
  name: string;
  version: string;
  files: Record<string, string>;
  modes?: Record<string, number>;
  unrecorded?: string[];
  wheelVersion?: string;
}

interface Laid {
  exit: number;
  stdout: string;
  stderr: string;
  before: string[];
  after: string[];
  ours?: string[];
  pip?: string[];
}

async function layOut(wheels: Wheel[], options: { pip?: boolean; existing?: string[]; installer?: string } = {}): Promise<Laid> {
  const kase = JSON.stringify({ wheels, existing: options.existing ?? [], pip: options.pip ?? false });
  const { stdout } = await run('python3', [LAYOUTS, DRIVER, options.installer ?? PYPA_INSTALLER, kase], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as Laid;
}

const INIT = 'def main():\n    print("ran")\n';

test("what pip lays out, it lays out the same: files, modes, RECORD's rows, bytecode, scripts, entry points", async () => {
  const beta: Wheel = {
    name: 'beta',
    version: '2.0',
    files: {
      'beta/__init__.py': INIT,
      'beta/broken.py': 'def (\n', // no bytecode, as pip leaves none
      'beta/data.txt': 'data',
      'beta/run.sh': '#!/bin/sh\necho run\n',
      'beta-2.0.dist-info/entry_points.txt': '[console_scripts]\nbeta-tool = beta:main\n[gui_scripts]\nbeta-gui = beta:main\n',
      'beta-2.0.data/scripts/hello': '#!python\nprint("hello")\n',
      'beta-2.0.data/scripts/tool.py': '#!python -E\nprint("tool")\n',
      'beta-2.0.data/scripts/plain': '#!/bin/sh\necho plain\n',
      'beta-2.0.data/purelib/beta_pure.py': 'P = 1\n',
      'beta-2.0.data/platlib/beta_plat/x.py': 'Q = 1\n',
    },
    modes: { 'beta/run.sh': 0o755, 'beta-2.0.data/scripts/hello': 0o755 },
  };
  const other: Wheel = { name: 'other-name', version: '3.1', files: { 'other_name/__init__.py': '' } };
  const laid = await layOut([beta, other], { pip: true });
  assert.equal(laid.exit, 0, laid.stderr);
  assert.equal(laid.stdout, 'Installing collected packages: beta, other_name\nSuccessfully installed beta-2.0 other_name-3.1\n');
  assert.deepEqual(laid.ours, laid.pip);
  // The comparison saw what it is meant to: compiled scripts, hashed data files, launchers.
  const ours = laid.ours!.join('\n');
  for (const row of [
    '../../../bin/__pycache__/tool.',
    'beta_plat/__pycache__/x.',
    '../../../bin/beta-tool launcher #!ENV/bin/python',
    'beta/run.sh ',
    'beta-2.0.dist-info/REQUESTED',
  ]) {
    assert.ok(ours.includes(row), `${row} in\n${ours}`);
  }
  assert.doesNotMatch(ours, /broken\.cpython|HASH WRONG/);
});

test('a wheel it leaves to pip (exit 3) leaves the environment as it was', async () => {
  const wheel = (files: Record<string, string>, more: Partial<Wheel> = {}): Wheel => ({
    name: 'left',
    version: '1.0',
    files: { 'left/__init__.py': '', ...files },
    ...more,
  });
  const cases: [string, Wheel[], { existing?: string[]; installer?: string }?][] = [
    ['data pip places outside the environment', [wheel({ 'left-1.0.data/data/share/x': 'x' })]],
    ['headers', [wheel({ 'left-1.0.data/headers/x.h': 'int x;' })]],
    ['a script in a subdirectory', [wheel({ 'left-1.0.data/scripts/sub/x': '#!python\n' })]],
    ['a file two wheels write', [wheel({ 'shared/__init__.py': 'A = 1\n' }), { name: 'other', version: '1.0', files: { 'shared/__init__.py': 'B = 1\n' } }]],
    ['a file there already', [wheel({})], { existing: ['left/__init__.py'] }],
    ["a file the wheel's RECORD does not name", [wheel({ 'left/x.py': '' }, { unrecorded: ['left/x.py'] })]],
    ['a path climbing out', [wheel({ 'left/../../../../escaped.py': '' })]],
    ['a directory looking like .data', [wheel({ 'left-1.0.data_x/y.py': '' })]],
    ['an entry point named as a path', [wheel({ 'left-1.0.dist-info/entry_points.txt': '[console_scripts]\n../escaped = left:f\n' })]],
    [
      'an entry point and a script of one name',
      [wheel({ 'left-1.0.dist-info/entry_points.txt': '[console_scripts]\nleft = left:f\n', 'left-1.0.data/scripts/left': '#!python\n' })],
    ],
    ['a Wheel-Version pip refuses', [wheel({}, { wheelVersion: '2.0' })]],
    ['two .dist-info directories', [wheel({ 'other-1.0.dist-info/METADATA': 'Name: other\n' })]],
    ['no installer where it is looked for', [wheel({})], { installer: '/nonexistent/installer' }],
  ];
  for (const [what, wheels, options] of cases) {
    const laid = await layOut(wheels, options);
    assert.equal(laid.exit, 3, `${what}: ${laid.stderr}`);
    assert.equal(laid.stdout, '', what);
    assert.deepEqual(laid.after, laid.before, `${what}: nothing written`);
  }
});
