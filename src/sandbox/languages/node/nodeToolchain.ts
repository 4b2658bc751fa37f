import { readFile, realpath } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** The worker's own Node, which node sessions run on, and the npm that came with it (resolved once). */
export interface NodeToolchain {
  /** The node binary, symlinks resolved. */
  executable: string;
  /** e.g. "20.20.2" */
  version: string;
  /** The installation's prefix (the directory above bin/): what a sandbox must show for Node to run. */
  prefix: string;
  /** npm's entry point (bin/npm-cli.js) and version; undefined when this Node has no npm (pkg.install then fails). */
  npm: { cli: string; root: string; version: string } | undefined;
}

/** npm as Node's installers lay it out: lib/node_modules/npm under Node's prefix. */
async function findNpm(prefix: string): Promise<NodeToolchain['npm']> {
  try {
    const root = await realpath(join(prefix, 'lib', 'node_modules', 'npm'));
    const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version?: unknown };
    if (typeof version !== 'string') return undefined;
    return { cli: join(root, 'bin', 'npm-cli.js'), root, version };
  } catch {
    return undefined;
  }
}

/** The Node running the worker. */
export async function resolveNodeToolchain(): Promise<NodeToolchain> {
  const executable = await realpath(process.execPath);
  const prefix = dirname(dirname(executable));
  return { executable, version: process.versions.node, prefix, npm: await findNpm(prefix) };
}
