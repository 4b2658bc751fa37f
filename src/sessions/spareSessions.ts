import { randomBytes } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { PreparedSandbox, SandboxHost } from '../sandbox/host/sandboxHost.js';
import type { SessionDirectories, WorkspaceStore } from '../storage/workspaceStore.js';
import { deferred } from '../deferred.js';

interface Spare {
  name: string;
  prepared: PreparedSandbox;
}

/**
 * A few sessions made ahead (directories, disk, the default language's environment, uid, cgroup,
 * network namespace), so CreateSession only names one and sets its limits. Refilled in the
 * background, one at a time; when they run out, a session is made on the spot. Spares get the disk size sessions last asked
 * for, so a fleet whose sessions share a size takes them ready made.
 */
export class SpareSessions {
  private readonly spares: Spare[] = [];
  private refilling: Promise<void> | undefined;
  private stopped = false;
  /** Settles once a spare is ready, or making them stopped or failed. */
  private readonly firstMade = deferred();

  constructor(
    private readonly store: Pick<WorkspaceStore, 'create' | 'rename' | 'remove' | 'directories'>,
    private readonly sandboxHost: Pick<SandboxHost, 'prepare' | 'discard'>,
    private readonly size: number,
    private diskMb: number,
    private readonly logger: Logger,
  ) {}

  /** Directories and a prepared sandbox for `sessionId`, from a spare when there is one (one of `diskMb` first). */
  async take(sessionId: string, diskMb: number): Promise<{ dirs: SessionDirectories; prepared: PreparedSandbox }> {
    if (diskMb !== this.diskMb) {
      // The next spares are made at the size asked for now; those of the old size go first.
      this.diskMb = diskMb;
      this.spares.sort((a, b) => Number(b.prepared.diskMb !== diskMb) - Number(a.prepared.diskMb !== diskMb));
    }
    try {
      const matching = this.spares.findIndex((s) => s.prepared.diskMb === diskMb);
      const order = matching >= 0 ? [this.spares.splice(matching, 1)[0]] : [];
      // A spare whose directories went missing (removed from outside) is dropped; the next is tried.
      for (let spare = order.shift() ?? this.spares.shift(); spare; spare = this.spares.shift()) {
        try {
          return { dirs: await this.store.rename(spare.name, sessionId), prepared: spare.prepared };
        } catch {
          await this.discard(spare);
        }
      }
      const made = await this.make(diskMb);
      try {
        return { dirs: await this.store.rename(made.name, sessionId), prepared: made.prepared };
      } catch (err) {
        await this.discard(made);
        throw err;
      }
    } finally {
      this.refill();
    }
  }

  /** Fills up to the target size in the background, two at a time (a disk's mount waits on I/O more than on the CPU). */
  refill(): void {
    if (this.refilling || this.stopped) return;
    let making = 0;
    const maker = async () => {
      while (!this.stopped && this.spares.length + making < this.size) {
        making++;
        try {
          this.spares.push(await this.make(this.diskMb));
          this.firstMade.resolve();
        } finally {
          making--;
        }
      }
    };
    this.refilling = Promise.all([maker(), maker()])
      .then(() => undefined)
      .catch((err: Error) => {
        this.logger.warn('could not prepare a spare session', { error: err.message });
      })
      .finally(() => {
        this.refilling = undefined;
        this.firstMade.resolve();
      });
  }

  /** Resolves once the first spare is ready (or none will be: none wanted, or making one failed). */
  firstReady(): Promise<void> {
    if (this.size === 0 || this.stopped) return Promise.resolve();
    return this.firstMade.promise;
  }

  /** Stops refilling and removes the spares (shutdown). */
  async drain(): Promise<void> {
    this.stopped = true;
    await this.refilling;
    await Promise.all(this.spares.splice(0).map((spare) => this.discard(spare)));
  }

  private async make(diskMb: number): Promise<Spare> {
    const name = `.spare-${randomBytes(8).toString('hex')}`;
    const dirs = await this.store.create(name);
    try {
      return { name, prepared: await this.sandboxHost.prepare(dirs, diskMb) };
    } catch (err) {
      await this.store.remove(name).catch(() => undefined);
      throw err;
    }
  }

  private async discard(spare: Spare): Promise<void> {
    await this.sandboxHost.discard(spare.prepared, this.store.directories(spare.name));
    await this.store.remove(spare.name).catch(() => undefined);
  }
}
