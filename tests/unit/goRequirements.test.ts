import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { GO_INSTALLER, goModRequires, moduleOf, parseModuleRequirements, splitRequirement } from '../../src/sandbox/languages/go/goRequirements.js';

function refusal(text: string): string {
  try {
    parseModuleRequirements(text);
  } catch (err) {
    assert.ok(err instanceof WorkerError, String(err));
    assert.equal(err.code, Status.INVALID_ARGUMENT);
    return err.message;
  }
  assert.fail(`${JSON.stringify(text)} was accepted`);
}

test('module@version lines: versions, pseudo-versions, prefixes and latest; blank lines and comments skipped', () => {
  const lines = [
    'example.com/mod@v1.2.3',
    'github.com/Owner/Repo/v2@v2.0.0-rc.1+meta',
    'golang.org/x/text@v0.0.0-20240101000000-abcdef123456',
    'gopkg.in/yaml.v3@v3',
    'example.com/a_b~c/d-e@v1.2',
    'example.com/mod@latest',
    'my-host.example.co.uk/x@v0.1.0',
  ];
  assert.deepEqual(parseModuleRequirements(`# modules\n${lines.join('\n')}\n\n  # end\r\n`), lines);
  assert.deepEqual(parseModuleRequirements('example.com/m@v1.0.0 # pinned'), ['example.com/m@v1.0.0']);
});

test('options, replacements, URLs, local paths and bare names are INVALID_ARGUMENT, each said for what it is', () => {
  for (const [line, pattern] of [
    ['-modfile=/workspace/go.mod', /not go options/],
    ['-toolexec=/bin/sh', /not go options/],
    ['example.com/m => ../local', /cannot replace/],
    ['example.com/m@v1.0.0=>evil.com/m@v1.0.0', /cannot replace/],
    ['https://example.com/m@v1.0.0', /not URLs/],
    ['git+ssh://example.com/m@v1', /not URLs/],
    ['file:///srv/m@v1.0.0', /not URLs/],
    ['./local@v1.0.0', /not local paths/],
    ['/abs/m@v1.0.0', /not local paths/],
    ['~/m@v1.0.0', /not local paths/],
    ['example.com/../etc@v1.0.0', /not local paths/],
    ['example.com/m', /needs a version/],
    ['std@latest', /not a Go module@version/],
    ['cmd/go@v1.0.0', /not a Go module@version/],
    ['Example.com/m@v1.0.0', /not a Go module@version/],
    ['example.com/m@master', /not a Go module@version/],
    ['example.com/m@none', /not a Go module@version/],
    ['example.com/m@v1.0.0 example.com/n@v1.0.0', /not a Go module@version/],
    ['example.com//m@v1.0.0', /not a Go module@version/],
    ['example.com/m.@v1.0.0', /not a Go module@version/],
    ['example.com/m@v01.0.0', /not a Go module@version/],
    ['example.com/m@>=v1.0.0', /not a Go module@version/],
    ['example.com/m@v1.0.0;rm -rf /', /not a Go module@version/],
    [`example.com/${'a'.repeat(500)}@v1.0.0`, /not a Go module@version/],
  ] as const) {
    assert.match(refusal(line), pattern, line);
  }
  assert.match(refusal('\n# nothing\n'), /list no modules/);
});

test("a go.mod's require directives, single and in blocks, comments dropped, malformed lines left out", () => {
  const goMod = `module session

go 1.19

require example.com/one v1.0.0

require (
\texample.com/two v0.2.0 // indirect
\t// a comment
\texample.com/three/v3 v3.0.0-20240101000000-abcdef123456
\t"quoted.example/x" v1.0.0
\tbad line with words
)

replace example.com/one => ../elsewhere
require example.com/four v4.0.0 // indirect
`;
  assert.deepEqual(goModRequires(goMod), [
    { path: 'example.com/one', version: 'v1.0.0' },
    { path: 'example.com/two', version: 'v0.2.0' },
    { path: 'example.com/three/v3', version: 'v3.0.0-20240101000000-abcdef123456' },
    { path: 'example.com/four', version: 'v4.0.0' },
  ]);
  assert.deepEqual(goModRequires(''), []);
});

test('a requested path maps to the module providing it (the longest prefix); installed names are module@version, each once', () => {
  const modules = [{ path: 'example.com/m' }, { path: 'example.com/m/sub' }, { path: 'example.com/mx' }];
  assert.equal(moduleOf('example.com/m/sub/pkg', modules)?.path, 'example.com/m/sub');
  assert.equal(moduleOf('example.com/m/other', modules)?.path, 'example.com/m');
  assert.equal(moduleOf('example.com/mx', modules)?.path, 'example.com/mx');
  assert.equal(moduleOf('example.com/n', modules), undefined);
  assert.deepEqual(splitRequirement('example.com/m@v1.2.3'), { path: 'example.com/m', version: 'v1.2.3' });

  const installed = [
    { name: 'example.com/m', version: 'v1.2.0', requested: true },
    { name: 'example.com/dep', version: 'v0.1.0', requested: false },
  ];
  assert.deepEqual(GO_INSTALLER.installedNames(['example.com/m@latest', 'example.com/m/pkg@v1.2.0', 'example.com/gone@v1.0.0'], installed), [
    'example.com/m@v1.2.0',
    'example.com/gone@v1.0.0',
  ]);
  assert.deepEqual(GO_INSTALLER.installedNames(['example.com/m@latest'], undefined), ['example.com/m@latest']);
});

test("go's error lines are told from its progress lines", () => {
  for (const line of ['go: downloading example.com/m v1.0.0', 'go: added example.com/m v1.0.0', 'go: upgraded example.com/m v1.0.0 => v1.1.0'])
    assert.equal(GO_INSTALLER.errorLine.test(line), false, line);
  for (const line of [
    'go: example.com/m@v9.0.0: reading http://127.0.0.1/example.com/m/@v/v9.0.0.info: 404 Not Found',
    'SECURITY ERROR',
    'verifying example.com/m@v1.0.0: checksum mismatch',
  ])
    assert.equal(GO_INSTALLER.errorLine.test(line), true, line);
});
