import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Owner } from '../../../storage/owner.js';
import { SYSTEM_PATH, type CodeCommand, type SessionRoots, type InstallResult, type Language, type LanguageSandbox } from '../language.js';
import type { Mount } from '../../confine/launcher.js';
import type { RunOptions } from '../../process/processSpec.js';
import { prepareSharedCache } from '../../caches/sharedCache.js';
import { createNodeEnvironment, installedInEnvironment } from './nodeEnvironment.js';
import { resolveNodeToolchain, type NodeToolchain } from './nodeToolchain.js';
import { NPM_CACHE_INSIDE, npmInstall } from './npmInstall.js';
import { NPM_INSTALLER } from './npmRequirements.js';
import { requireReachable } from '../../network/sourceReachable.js';

export interface NodeLanguageOptions {
  /** WORKER_NPM_REGISTRY: the only registry npm uses. */
  npmRegistry: string;
  /** The shared npm cache, owned by the installer uid (see storage/dataDirectory.ts). */
  npmCache: string;
}

/** Where packages are found from anywhere in an isolating sandbox: Node's own lookup climbs to it from every directory. */
const MODULES_LINK = '/node_modules';

/**
 * Node sessions: the worker's own Node (resolved once), an environment per session holding a
 * package.json and node_modules, code run by `node -` (CommonJS, or an ES module when the code
 * uses import/export syntax: Node's own detection), and packages installed by the npm that came
 * with that Node in two steps (npmInstall.ts).
 *
 * Both `require('pkg')` and `import 'pkg'` find the environment's packages: in an isolating
 * sandbox /node_modules is a link to the environment's node_modules, which Node's resolution
 * (CommonJS and ESM alike) reaches by climbing from the workspace, or from any other directory,
 * at no cost. Unisolated, where the host's root is not the worker's to lay out, NODE_PATH serves
 * require and a resolve hook registered at start serves import (it costs a loader thread).
 */
export class NodeLanguage implements Language {
  readonly name = 'node';
  // Nothing in a node environment is tied to this host's Node: no links to it, no install scripts ran.
  readonly machineSpecific = [];
  readonly writablePaths = [];
  readonly installer = NPM_INSTALLER;
  readonly installerCacheInside = NPM_CACHE_INSIDE;
  // V8's heap limit, a reservation refused (a small address-space limit: before any code runs),
  // C++'s bad_alloc, a buffer refused. A plain SIGSEGV under the limit says nothing.
  readonly outOfMemory = /JavaScript heap out of memory|# Fatal process OOM|std::bad_alloc|RangeError: Array buffer allocation failed/;
  readonly selfCheck = {
    code: 'console.log(6 * 7, require("node:fs").existsSync("/etc/shadow"), process.getuid())',
    isolated: '42 false',
    plain: '42',
  };
  readonly systemMounts: Mount[];
  readonly toolchainPath: string[];

  private constructor(
    readonly toolchain: NodeToolchain,
    private readonly options: NodeLanguageOptions,
  ) {
    const underUsr = (path: string) => path === '/usr' || path.startsWith('/usr/');
    const prefix = toolchain.prefix;
    const npm = toolchain.npm?.root;
    // Node's installation (and npm's, when it lives elsewhere), read-only at its own path.
    this.systemMounts = [
      ...(underUsr(prefix) ? [] : [{ host: prefix, inside: prefix, writable: false }]),
      ...(npm && !underUsr(npm) && !npm.startsWith(`${prefix}/`) ? [{ host: npm, inside: npm, writable: false }] : []),
    ];
    this.toolchainPath = underUsr(prefix) ? [] : [dirname(toolchain.executable)];
  }

  /** The worker's own Node (and its npm, if it has one). */
  static async resolve(options: NodeLanguageOptions): Promise<NodeLanguage> {
    return new NodeLanguage(await resolveNodeToolchain(), options);
  }

  describe(): Record<string, string> {
    return { node: this.toolchain.executable, node_version: this.toolchain.version, npm_version: this.toolchain.npm?.version ?? 'none' };
  }

  /** The shared npm cache, the fetching uid's. */
  async prepareHost(installer: Owner | undefined): Promise<void> {
    await prepareSharedCache(this.options.npmCache, installer);
  }

  async createEnvironment(root: string): Promise<void> {
    await createNodeEnvironment(root);
  }

  /** Nothing of the environment is needed to run code (the interpreter is the worker's own). */
  async checkEnvironment(): Promise<void> {}

  runCommand(environment: string, isolated: boolean): CodeCommand {
    const modules = join(environment, 'node_modules');
    const path = [join(modules, '.bin'), ...this.toolchainPath, SYSTEM_PATH].join(':');
    const env = { PATH: path, NODE_PATH: modules };
    if (isolated) return { command: [this.toolchain.executable, '-'], env, mounts: [{ inside: MODULES_LINK, link: modules }] };
    return { command: [this.toolchain.executable, `--import=${resolveHook(modules)}`, '-'], env };
  }

  warmCommand(): undefined {
    return undefined;
  }

  async install(sandbox: LanguageSandbox, requirements: string[], options: RunOptions): Promise<InstallResult> {
    await requireReachable(this.options.npmRegistry, 'WORKER_NPM_REGISTRY');
    return npmInstall(sandbox, requirements, options, {
      toolchain: this.toolchain,
      systemMounts: this.systemMounts,
      registry: this.options.npmRegistry,
      cache: await sandbox.installerCache(this.options.npmCache),
    });
  }

  installedPackages(roots: SessionRoots): Promise<string[]> {
    return installedInEnvironment(roots.environment);
  }
}

/**
 * `import 'pkg'` of the environment's packages without an isolating sandbox: a resolve hook
 * (module.register) that, when Node's own resolution finds no bare specifier, resolves it again
 * from the environment. Given as a data: URL, so no file of the session's is run by it.
 */
function resolveHook(modules: string): string {
  const base = JSON.stringify(pathToFileURL(`${dirname(modules)}/`).href);
  const hook = `export async function resolve(s, c, next) { try { return await next(s, c); } catch (e) { if (e?.code !== 'ERR_MODULE_NOT_FOUND' || /^[./]|^[a-z]+:/i.test(s)) throw e; return next(s, { ...c, parentURL: ${base} }); } }`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
  return `data:text/javascript,${encodeURIComponent(register)}`;
}
