import { randomBytes } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { PreparedSandbox, SandboxHost } from '../sandbox/sandboxHost.js';
import type { SessionDirectories, WorkspaceStore } from '../storage/workspaceStore.js';

interface Spare {
  name: string;
  prepared: PreparedSandbox;
}

/**
 * A few sessions made ahead (directories, Python environment, uid, cgroup), so CreateSession
 * only names one and sets its limits. Refilled in the background, one at a time; when they run
 * out, a session is made on the spot.
 */
export class SpareSessions {
  private readonly spares: Spare[] = [];
  private refilling: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: WorkspaceStore,
    private readonly sandboxHost: SandboxHost,
    private readonly size: number,
    private readonly logger: Logger,
  ) {}

  /** Directories and a prepared sandbox for `sessionId`, from a spare when there is one. */
  async take(sessionId: string): Promise<{ dirs: SessionDirectories; prepared: PreparedSandbox }> {
    try {
      // A spare whose directories went missing (removed from outside) is dropped; the next is tried.
      for (let spare = this.spares.shift(); spare; spare = this.spares.shift()) {
        try {
          return { dirs: await this.store.rename(spare.name, sessionId), prepared: spare.prepared };
        } catch {
          await this.discard(spare);
        }
      }
      const made = await this.make();
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

  /** Fills up to the target size in the background. */
  refill(): void {
    if (this.refilling || this.stopped) return;
    this.refilling = (async () => {
      while (!this.stopped && this.spares.length < this.size) this.spares.push(await this.make());
    })()
      .catch((err: Error) => {
        this.logger.warn('could not prepare a spare session', { error: err.message });
      })
      .finally(() => (this.refilling = undefined));
  }

  /** Stops refilling and removes the spares (shutdown). */
  async drain(): Promise<void> {
    this.stopped = true;
    await this.refilling;
    await Promise.all(this.spares.splice(0).map((spare) => this.discard(spare)));
  }

  private async make(): Promise<Spare> {
    const name = `.spare-${randomBytes(8).toString('hex')}`;
    const dirs = await this.store.create(name);
    try {
      return { name, prepared: await this.sandboxHost.prepare(dirs) };
    } catch (err) {
      await this.store.remove(name).catch(() => undefined);
      throw err;
    }
  }

  private async discard(spare: Spare): Promise<void> {
    await this.sandboxHost.discard(spare.prepared);
    await this.store.remove(spare.name).catch(() => undefined);
  }
}
