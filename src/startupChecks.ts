import { access, constants, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { messageOf } from './errors.js';

/** Startup refused for a reason the operator can act on: printed as its one-line message alone. */
export class StartupRefused extends Error {
  override name = 'StartupRefused';
}

const errnoOf = (err: unknown) => (err as NodeJS.ErrnoException).code;

/**
 * Makes the data directory (and its parents) and checks the worker can write there, naming
 * WORKER_DATA_DIR and the cause when not. Node's own recursive mkdir loops for ever on some
 * paths (`/proc/nope`), so parents are made one by one.
 */
export async function prepareDataDirectory(dataDir: string): Promise<void> {
  const refuse = (cause: string) => new StartupRefused(`WORKER_DATA_DIR ${dataDir} ${cause}`);
  const make = async (dir: string): Promise<void> => {
    try {
      await mkdir(dir);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'EEXIST') return;
      if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
      await make(dirname(dir));
      await mkdir(dir).catch((again: unknown) => {
        if (errnoOf(again) !== 'EEXIST') throw again;
      });
    }
  };
  try {
    await make(dataDir);
    // mkdir's EEXIST only says something is there, and access() alone takes an executable file for a directory.
    if (!(await stat(dataDir)).isDirectory()) throw refuse('is not a directory');
    await access(dataDir, constants.W_OK | constants.X_OK);
  } catch (err) {
    if (err instanceof StartupRefused) throw err;
    switch (errnoOf(err)) {
      case 'EROFS':
        throw refuse('is on a read-only filesystem');
      case 'EACCES':
      case 'EPERM':
        throw refuse('is not writable by this worker');
      case 'ENOTDIR':
        throw refuse('is not a directory (or a parent of it is a file)');
      case 'ENOENT':
        throw refuse('cannot be created: its parent cannot hold directories');
      case 'ENOSPC':
        throw refuse('cannot be created: the disk is full');
      default:
        throw refuse(`cannot be used (${errnoOf(err) ?? messageOf(err)})`);
    }
  }
}

/** A listener that failed to bind, said in terms of its setting. */
export function listenRefused(setting: string, address: string, err: unknown): Error {
  const text = `${errnoOf(err) ?? ''} ${(err as Error)?.message ?? ''}`;
  if (/EADDRINUSE/.test(text)) return new StartupRefused(`${setting} ${address} is already in use (another process listens there)`);
  if (/EADDRNOTAVAIL/.test(text)) return new StartupRefused(`${setting} ${address} is not an address of this host`);
  if (/EACCES/.test(text)) return new StartupRefused(`${setting} ${address} needs privileges this worker does not have (a port below 1024?)`);
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return new StartupRefused(`${setting} ${address}: the host name does not resolve`);
  return err as Error;
}
