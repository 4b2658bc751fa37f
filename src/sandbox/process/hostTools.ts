import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promisify } from 'node:util';
import { constants } from 'node:fs';
import { pathExists } from '../../storage/pathExists.js';
import { delimiter, join } from 'node:path';
import { ToolRunner } from './toolRunner.js';

/**
 * The whole environment of what the worker runs as root: host tools, and the privileged part of a
 * launch (sh, prlimit, bwrap, setpriv). Fixed: a variable the session chose (LD_PRELOAD,
 * LD_DEBUG_OUTPUT, …) would be consumed by the dynamic loader of a root process.
 */
export const ROOT_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' });

/** The absolute path of `name` on the worker's PATH, or undefined. */
export async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const candidate = join(dir, name);
    if (await pathExists(candidate, constants.X_OK)) return candidate;
  }
  return undefined;
}

/**
 * Runs a host tool as the worker (ip, nft, mount…) with `input` on its stdin; its stdout. A
 * failure says the tool, its first argument and what it printed on stderr.
 */
export async function runHostTool(command: string, args: string[], input = '', timeoutMs = 60_000): Promise<string> {
  const outcome = await tools.run([command, ...args], input, timeoutMs).catch((err: Error) => {
    throw new Error(`${command} ${args[0] ?? ''} failed: ${err.message}`, { cause: err });
  });
  if (!outcome) return spawnHostTool(command, args, input, timeoutMs);
  if (outcome.code === 0) return outcome.stdout;
  throw new Error(`${command} ${args[0] ?? ''} failed (${outcome.signal ?? `exit ${outcome.code}`}): ${outcome.stderr.trim().slice(0, 2000)}`);
}

/** Host tools are started by the tool runner (toolRunner.ts): a fork of the worker held its event loop. */
const tools = new ToolRunner(ROOT_ENV);

/** runHostTool where there is no tool runner: a child of the worker's own. */
function spawnHostTool(command: string, args: string[], input: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...ROOT_ENV }, stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => reject(new Error(`${command} ${args[0] ?? ''} failed: ${err.message}`, { cause: err })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args[0] ?? ''} failed (${signal ?? `exit ${code}`}): ${stderr.trim().slice(0, 2000)}`));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

const execFileAsync = promisify(execFile);

/**
 * Runs a host program with exactly `env` (a toolchain asked about itself: its path, version);
 * its stdout. Rejects with execFile's error (its message says the command and what it printed).
 */
export async function probeProgram(command: string, args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<string> {
  return (await execFileAsync(command, args, { timeout: timeoutMs, env })).stdout;
}

/**
 * Starts a host tool as the worker that keeps running (the host lock's flock), with ROOT_ENV, in
 * a process group of its own (a Ctrl-C to the worker's group does not reach it), pipes on all
 * three streams; its caller owns it.
 */
export function startHostTool(command: string, args: string[]): ChildProcessWithoutNullStreams {
  return spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...ROOT_ENV }, detached: true });
}
