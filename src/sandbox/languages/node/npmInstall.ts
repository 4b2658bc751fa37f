import { readFileSync } from 'node:fs';
import { errors } from '../../../errors.js';
import { removeTree } from '../../../storage/removeTree.js';
import type { InstallResult, LanguageSandbox } from '../language.js';
import type { Mount } from '../../confine/launcher.js';
import type { RunOptions, SandboxedResult } from '../../process/processSpec.js';
import { installerEnv } from '../installerEnv.js';
import { environmentDependencies, installedByLock } from './nodeEnvironment.js';
import type { NodeToolchain } from './nodeToolchain.js';
import { splitSpec } from './npmRequirements.js';

export interface NpmInstallSetup {
  toolchain: NodeToolchain;
  systemMounts: Mount[];
  /** WORKER_NPM_REGISTRY */
  registry: string;
  /** The shared npm cache (host path), the installer uid's. */
  cache: string;
}

/** Where npm's shared cache is inside the fetching step's sandbox. */
export const NPM_CACHE_INSIDE = '/npm-cache';
const INSIDE = { cache: NPM_CACHE_INSIDE, fetched: '/fetched' };

/**
 * pkg.install for node, in two steps that never mix powers (as pip's):
 *
 * 1. fetch: the worker's installer uid, with network and the shared npm cache, has npm resolve
 *    and unpack the environment's packages (those its package.json lists, plus the requested
 *    ones) into a fresh directory. It sees neither the workspace nor the environment: the worker
 *    reads the environment's list and passes it as specs, each checked to be a registry spec
 *    (package-lock.json is not passed: its URLs are the session's to choose). The registry is
 *    WORKER_NPM_REGISTRY alone (no host .npmrc, no NPM_CONFIG_* variables), and the step runs
 *    no package code: `--ignore-scripts`, and a filter refusing it any new process (git for a
 *    git dependency, a shell for a script npm runs anyway).
 * 2. install: the session's own uid, with the session's network policy, copies that tree into
 *    its environment: package.json, package-lock.json and node_modules replaced whole.
 *
 * Install scripts (preinstall, install, postinstall) of packages never run: they are arbitrary
 * code, and in step 1 they would run with the installer's powers over the cache every session
 * reads. A session that wants them runs them itself, as its own uid (run.shell `npm rebuild`
 * in a copy of the packages in its workspace).
 */
export async function npmInstall(sandbox: LanguageSandbox, requirements: string[], options: RunOptions, setup: NpmInstallSetup): Promise<InstallResult> {
  if (!setup.toolchain.npm) throw errors.packageInstallFailed("the worker's Node has no npm (lib/node_modules/npm next to it), which pkg.install needs");
  const fetched = await sandbox.scratchDirectory('npm-fetch-', 'installer');
  try {
    // What the environment has already, as checked specs on npm's command line (the installer reads nothing of the session's),
    // but for the packages asked for now.
    const requested = new Set(requirements.map((spec) => splitSpec(spec).name));
    const kept = (await environmentDependencies(sandbox.environment.host)).filter((spec) => !requested.has(splitSpec(spec).name));
    const fetch = await fetchStep(sandbox, [...kept, ...requirements], fetched, options, setup);
    if (fetch.exitCode !== 0) return { ...fetch, installed: undefined };
    const installed = await installedByLock(fetched, [...requested]);
    const copy = await installStep(sandbox, fetched, options, setup);
    return {
      ...copy,
      stdout: { text: fetch.stdout.text + copy.stdout.text, truncated: fetch.stdout.truncated || copy.stdout.truncated },
      installed: copy.exitCode === 0 ? installed : undefined,
    };
  } finally {
    await removeTree(fetched);
  }
}

function npmEnv(): Record<string, string> {
  return installerEnv({
    // Only the worker's registry counts: no user or global npmrc (paths that cannot exist; npm
    // refuses /dev/null twice). npm still reads its own builtin npmrc, the host's installation's.
    npm_config_userconfig: '/dev/null/user-npmrc',
    npm_config_globalconfig: '/dev/null/global-npmrc',
    npm_config_update_notifier: 'false',
  });
}

/** Step 1: npm install into `fetched`, as the installer. */
function fetchStep(sandbox: LanguageSandbox, requirements: string[], fetched: string, options: RunOptions, setup: NpmInstallSetup): Promise<SandboxedResult> {
  const inside = (host: string, path: string) => (sandbox.isolate ? path : host);
  const command = [
    setup.toolchain.executable,
    setup.toolchain.npm!.cli,
    'install',
    '--ignore-scripts',
    '--no-audit',
    '--no-fund',
    '--save-exact',
    '--loglevel=http',
    `--registry=${setup.registry}`,
    `--cache=${inside(setup.cache, INSIDE.cache)}`,
    `--prefix=${inside(fetched, INSIDE.fetched)}`,
    '--logs-max=0',
    '--',
    ...requirements,
  ];
  const mounts: Mount[] = [
    ...setup.systemMounts,
    { host: setup.cache, inside: INSIDE.cache, writable: true },
    { host: fetched, inside: INSIDE.fetched, writable: true },
  ];
  const cwd = inside(fetched, INSIDE.fetched);
  return sandbox.run({ command, cwd, env: npmEnv(), mounts, network: true, as: 'installer', denyProcesses: true }, options);
}

/** Step 2, the fetched tree into the environment: npmInstallStep.sh, read once from the checkout (this module runs from dist/). */
const INSTALL_SCRIPT = readFileSync(new URL('../../../../../src/sandbox/languages/node/npmInstallStep.sh', import.meta.url), 'utf8');

function installStep(sandbox: LanguageSandbox, fetched: string, options: RunOptions, setup: NpmInstallSetup): Promise<SandboxedResult> {
  const from = sandbox.isolate ? INSIDE.fetched : fetched;
  const env = sandbox.isolate ? sandbox.environment.inside : sandbox.environment.host;
  const mounts: Mount[] = [
    ...setup.systemMounts,
    { host: sandbox.environment.host, inside: sandbox.environment.inside, writable: true },
    { host: fetched, inside: INSIDE.fetched, writable: false },
  ];
  const command = ['/bin/sh', '-c', INSTALL_SCRIPT, 'npm-install', from, env];
  return sandbox.run({ command, cwd: env, env: installerEnv({}), mounts, network: sandbox.allowNetwork, as: 'session' }, options);
}
