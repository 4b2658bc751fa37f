import { closeSync } from 'node:fs';
import { openChildDirectorySync } from './beneath.js';
import { pathArg, type ByteString } from './byteNames.js';

/**
 * The open directory of the entries an archive is being written from or extracted into. Entries
 * come in tree order, so consecutive ones mostly share a directory: it is opened once (component
 * by component from the root's descriptor, following no link: storage/beneath.ts) and kept until
 * an entry elsewhere is asked for. Synchronous: a few µs per open, against a thread-pool round
 * trip per component per file. The descriptor is valid until the next call or close().
 */
export class DirectoryCursor {
  private path: string | undefined;
  private fd = -1;

  constructor(private readonly root: number) {}

  /**
   * The descriptor of the directory `segments` (byte strings: storage/byteNames.ts) names below
   * the root; throws (ENOENT, ENOTDIR, ELOOP) when it is not a real directory there.
   */
  open(segments: readonly ByteString[]): number {
    if (segments.length === 0) return this.root;
    const path = segments.join('/');
    if (path === this.path) return this.fd;
    this.close();
    let dir = this.root;
    try {
      for (const name of segments) {
        const child = openChildDirectorySync(dir, pathArg(name));
        if (dir !== this.root) closeSync(dir);
        dir = child;
      }
    } catch (err) {
      if (dir !== this.root) closeSync(dir);
      throw err;
    }
    this.path = path;
    this.fd = dir;
    return dir;
  }

  close(): void {
    if (this.fd !== -1) closeSync(this.fd);
    this.fd = -1;
    this.path = undefined;
  }
}
