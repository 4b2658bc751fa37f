import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startWorker } from './helpers/worker.js';

// The client as a user gets it: `npm pack` of client/, installed by name into a project outside
// the repository, without the network, and the README's typed-client example run against a real
// worker.

const ROOT = new URL('../../', import.meta.url).pathname;
const CLIENT_DIR = join(ROOT, 'client');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

interface PackageJson {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  bin?: Record<string, string>;
}
interface LockEntry {
  version: string;
  integrity?: string;
  resolved?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const readJson = <T>(path: string) => JSON.parse(readFileSync(path, 'utf8')) as T;
const rootPackage = readJson<PackageJson>(join(ROOT, 'package.json'));
const clientPackage = readJson<PackageJson>(join(CLIENT_DIR, 'package.json'));
const rootLock = readJson<{ packages: Record<string, LockEntry> }>(join(ROOT, 'package-lock.json')).packages;

const work = mkdtempSync(join(tmpdir(), 'codegen-client-package-'));
after(() => rmSync(work, { recursive: true, force: true }));

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} (in ${cwd}) failed:\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** The lock entry `name` resolves to from `from` (a lock path), as Node resolves it. */
function resolveInLock(from: string, name: string): string {
  for (let at = from; ; at = at.includes('/node_modules/') ? at.slice(0, at.lastIndexOf('/node_modules/')) : '') {
    const path = `${at ? `${at}/` : ''}node_modules/${name}`;
    if (rootLock[path]) return path;
    assert.ok(at, `${name} (needed by ${from || 'the client'}) is in package-lock.json`);
  }
}

/**
 * Why the project gets a lock file: npm 11 resolves a dependency range against the registry's
 * full metadata document (build-ideal-tree's fetchManifest asks for fullMetadata), and the
 * repository's own `npm install`, driven by package-lock.json, never fetched those: the npm cache
 * holds the tarballs (by integrity) and abbreviated documents only, so `npm install --offline`
 * of a package with ranges fails ENOTCACHED. Even with metadata cached, a range picks the newest
 * version published, which need not be the one the repository's lock pinned and cached. A project
 * whose lock names the versions installs from the cached tarballs alone: here the lock pins the
 * client's dependency tree (what client/package.json declares, followed through the repository's
 * lock) at the versions the repository installed. A user with the network needs none of this.
 */
function lockOfClientDependencies(registry: string): Record<string, LockEntry> {
  const entries: Record<string, LockEntry> = {};
  const visit = (path: string) => {
    if (entries[path]) return;
    const entry = rootLock[path];
    assert.ok(entry, `${path} is in the repository's lock`);
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    entries[path] = { ...entry, resolved: `${registry}/${name}/-/${name.split('/').pop()}-${entry.version}.tgz` };
    for (const dependency of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) visit(resolveInLock(path, dependency));
  };
  for (const dependency of Object.keys(clientPackage.dependencies)) visit(resolveInLock('', dependency));
  return entries;
}

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? filesUnder(dir, path) : [path];
  });
}

/** The package names bare imports in these files name (`@scope/name/sub` → `@scope/name`), builtins left out. */
function importedPackages(files: string[]): Set<string> {
  const names = new Set<string>();
  for (const file of files) {
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^;'"]*?from\s+['"]([^'"]+)['"]/gm)) {
      assert.ok(specifier);
      if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      const [first, second] = specifier.split('/');
      names.add(specifier.startsWith('@') ? `${first}/${second}` : first!);
    }
  }
  return names;
}

/** The README's typed-client example: the ts block that imports the client package. */
function readmeExample(): string {
  const blocks = [...readFileSync(join(ROOT, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const example = blocks.find((block) => block.includes(`from '${clientPackage.name}'`));
  assert.ok(example, `README.md has a ts example importing '${clientPackage.name}'`);
  assert.ok(example.includes("'localhost:50052'"), 'the example reaches a worker at localhost:50052');
  return example;
}

test("client/package.json: the version and the dependency ranges are the root package's", () => {
  assert.equal(clientPackage.version, rootPackage.version);
  for (const [name, range] of Object.entries(clientPackage.dependencies)) assert.equal(range, rootPackage.dependencies[name], `${name}'s range`);
});

test("the packed client installs offline into a clean project, without the worker's dependencies, and runs the README example against a worker", async (t) => {
  // npm pack (its prepack builds client/dist with `make client-package`).
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], CLIENT_DIR).stdout) as {
    filename: string;
    size: number;
    unpackedSize: number;
    files: { path: string }[];
  }[];
  const [pack] = packed;
  assert.ok(pack);
  const tarball = join(work, pack.filename);
  const files = pack.files.map((f) => f.path).sort();
  for (const file of files)
    assert.match(
      file,
      /^(package\.json|README\.md|LICENSE|dist\/src\/client\/[^/]+\.(js|d\.ts)|dist\/src\/(cli|version)\.(js|d\.ts)|dist\/gen\/codegen\/v1\/[^/]+\.(js|d\.ts))$/,
      `${file}: only the client, the CLI and generated code are packed`,
    );
  for (const needed of ['LICENSE', 'dist/src/client/index.js', 'dist/src/client/index.d.ts', 'dist/src/cli.js', 'dist/gen/codegen/v1/task_execution.js'])
    assert.ok(files.includes(needed), `${needed} is packed`);

  // A clean project outside the repository, and the tarball installed into it from the npm cache.
  const project = join(work, 'project');
  run('mkdir', ['-p', project], work);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'client-package-test', version: '1.0.0', private: true, type: 'module' }, null, 2));
  const registry = run('npm', ['config', 'get', 'registry'], project).stdout.trim().replace(/\/$/, '');
  const lock = {
    name: 'client-package-test',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages: { '': { name: 'client-package-test', version: '1.0.0' }, ...lockOfClientDependencies(registry) },
  };
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify(lock, null, 2));
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project);

  // Only the client's own dependencies: none of the worker's.
  const installed = join(project, 'node_modules');
  const installedFiles = filesUnder(installed);
  const installedPackages = new Set(
    installedFiles
      .filter((f) => f.endsWith('/package.json'))
      .map((f) => /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\/package\.json$/.exec(`node_modules/${f}`)?.[1])
      .filter((n) => n !== undefined),
  );
  assert.ok(installedPackages.has(clientPackage.name) && installedPackages.has('nice-grpc') && installedPackages.has('@grpc/grpc-js'));
  assert.ok(!installedFiles.some((f) => /(^|\/)(@aws-sdk|archiver)\//.test(f)), 'no @aws-sdk, no archiver');
  const clientTree = new Set(Object.keys(lockOfClientDependencies(registry)).map((p) => p.slice(p.lastIndexOf('node_modules/') + 'node_modules/'.length)));
  for (const serverOnly of Object.keys(rootPackage.dependencies).filter((name) => !clientTree.has(name)))
    assert.ok(!installedPackages.has(serverOnly), `${serverOnly} (the worker's) is not installed`);
  const bytes = installedFiles.reduce((sum, f) => sum + statSync(join(installed, f)).size, 0);
  t.diagnostic(
    `tarball ${pack.filename}: ${pack.size} bytes packed, ${pack.unpackedSize} unpacked, ${files.length} files; installed node_modules: ${installedPackages.size} packages, ${(bytes / 1024 / 1024).toFixed(1)} MiB`,
  );
  // About 12 MiB of gRPC and protobuf, and 15 of the MCP SDK (`codegen-worker mcp`: express, hono, zod, ajv).
  assert.ok(bytes < 35 * 1024 * 1024, `the installed client stays small (${bytes} bytes)`);

  // The package declares exactly what its code imports.
  const packageDir = join(installed, clientPackage.name);
  const code = filesUnder(packageDir)
    .filter((f) => /\.(js|d\.ts)$/.test(f))
    .map((f) => join(packageDir, f));
  assert.deepEqual([...importedPackages(code)].sort(), Object.keys(clientPackage.dependencies).sort());

  // The README's example, typed: it compiles against the installed package's declarations.
  const worker = await startWorker();
  try {
    const example = readmeExample().replace("'localhost:50052'", JSON.stringify(worker.address));
    writeFileSync(join(project, 'example.ts'), example);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true },
        files: ['example.ts'],
      }),
    );
    run(process.execPath, [TSC, '-p', 'tsconfig.json'], project);

    // And it runs, importing the package by name.
    writeFileSync(join(project, 'example.mjs'), example);
    const { NODE_PATH: _, ...env } = process.env;
    const output = run(process.execPath, ['example.mjs'], project, env).stdout;
    assert.deepEqual(output.trim().split('\n'), ['live: 42', '0 42', 'timeout timeout started', 'background: got hello', '3']);

    // The CLI came with it.
    const cli = join(installed, '.bin/codegen-worker');
    assert.ok(existsSync(cli));
    assert.equal(run(cli, ['--version'], project).stdout, `${clientPackage.version}\n`);
    assert.match(run(cli, ['--address', worker.address, 'create', '--workspace', 'from-the-package'], project).stdout, /^session-\S+\n$/);
  } finally {
    await worker.stop();
  }
});
