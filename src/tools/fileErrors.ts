import type { Stats } from 'node:fs';
import { errors, quoted, WorkerError } from '../errors.js';
import { OutsideTreeError } from '../storage/beneath.js';

/** Turns a filesystem error on a workspace path into the tool error a client can act on. */
export function toFileError(path: string, err: unknown): Error {
  if (err instanceof WorkerError) return err;
  if (err instanceof OutsideTreeError) return errors.invalidPath(path, err.reason);
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return errors.fileNotFound(path);
    case 'EACCES':
    case 'EPERM':
      return errors.permissionDenied(path, 'the session may not do this to it');
    case 'EROFS':
      return errors.readOnlyDisk(quoted(path, 200));
    case 'ENOTDIR':
      return errors.invalidPath(path, 'a part of it is a file, not a directory');
    case 'EISDIR':
      return errors.invalidArgument(`${quoted(path, 200)} is a directory`);
    case 'ELOOP':
      return errors.invalidPath(path, 'it changed into a symlink while being used, or links loop');
    case 'ENXIO':
      // open(2) of a socket file
      return errors.invalidArgument(`${quoted(path, 200)} is not a regular file`);
    case 'ENAMETOOLONG':
      return errors.invalidPath(path, 'a name in it is too long');
    case 'ENOSPC':
    case 'EDQUOT':
      return errors.tooLarge(`no space left for ${quoted(path, 200)}: the disk or the session's disk limit is full`);
    default:
      return err as Error;
  }
}

/**
 * The worker runs with more rights than the code in a session; the fs tools honour the file's
 * own permission bits as the session's code would see them, so a file made read-only stays so.
 */
export function requireMode(path: string, mode: number, bit: 0o400 | 0o200): void {
  if ((mode & bit) === 0) {
    const what = bit === 0o200 ? 'read-only' : 'not readable';
    throw errors.permissionDenied(path, `the file is ${what} (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); change its mode first`);
  }
}

/** FIFOs, sockets and devices are refused: reading or replacing them is not what fs tools do. */
export function requireRegularFile(path: string, st: Stats): void {
  if (!st.isFile()) throw errors.invalidArgument(`${quoted(path, 200)} is not a regular file`);
}
