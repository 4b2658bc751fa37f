import { deferred, type Deferred } from '../deferred.js';

/**
 * The worker's own writes into a session's files (fs.write) against the instants its disk is
 * copied (ForkSession). A copy is a sync and a clone of the disk image: what a write under way
 * has put there so far is in it, as a sudden stop would leave it (a file renamed into place
 * before all its bytes reached the disk). So a copy waits for the writes under way and holds new
 * ones until it is made: a fork holds each of the worker's writes whole or not at all. Copies
 * of one session are made one at a time.
 */
export class WriteGate {
  private writing = 0;
  private drained: Deferred<void> | undefined;
  /** Settles when the copy being made is made; undefined when none is. */
  private copying: Promise<void> | undefined;

  /** Runs `work` (a write into the session's files) once no copy is being made. */
  async write<T>(work: () => Promise<T>): Promise<T> {
    while (this.copying) await this.copying;
    this.writing++;
    try {
      return await work();
    } finally {
      if (--this.writing === 0) this.drained?.resolve();
    }
  }

  /** Runs `work` (a copy of the session's disk) once the writes under way are done, holding new ones meanwhile. */
  async copy<T>(work: () => Promise<T>): Promise<T> {
    while (this.copying) await this.copying;
    const made = deferred();
    this.copying = made.promise;
    try {
      if (this.writing > 0) {
        this.drained = deferred();
        await this.drained.promise;
      }
      return await work();
    } finally {
      this.drained = undefined;
      this.copying = undefined;
      made.resolve();
    }
  }
}
