import { realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { messageOf } from '../../../errors.js';
import { probeProgram } from '../../process/hostTools.js';

/** The host's Go toolchain sessions build with, resolved once. */
export interface GoToolchain {
  /** Absolute path of the go command in GOROOT/bin, symlinks resolved. */
  executable: string;
  /** GOROOT, symlinks resolved: what a sandbox must show for go to run. */
  goroot: string;
  /** e.g. "go1.19.8" */
  version: string;
  /** The `go` directive of new modules: the toolchain's language version, e.g. "1.19". */
  languageVersion: string;
}

export class GoUnavailableError extends Error {
  override name = 'GoUnavailableError';
}

/** WORKER_GO (`go` on PATH by default) asked for its GOROOT and version; GoUnavailableError when it cannot run. */
export async function resolveGoToolchain(command: string): Promise<GoToolchain> {
  let stdout: string;
  try {
    // No user configuration file, no toolchain switch: the go that runs is the one asked about.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', GOENV: 'off', GOTOOLCHAIN: 'local', HOME: '/nonexistent' };
    stdout = await probeProgram(command, ['env', 'GOROOT', 'GOVERSION'], env);
  } catch (err) {
    throw new GoUnavailableError(`cannot run the go command '${command}' (install golang-go or set WORKER_GO): ${messageOf(err)}`);
  }
  const [goroot, version] = stdout.trim().split('\n');
  const languageVersion = /^go(\d+\.\d+)/.exec(version ?? '')?.[1];
  if (!goroot || !version || !languageVersion)
    throw new GoUnavailableError(`'${command} env GOROOT GOVERSION' printed no GOROOT and version: ${stdout.slice(0, 200)}`);
  const root = await realpath(goroot);
  return { executable: await realpath(join(root, 'bin', 'go')), goroot: root, version, languageVersion };
}
