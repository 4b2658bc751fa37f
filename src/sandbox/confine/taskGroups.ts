import { deferred, type Deferred } from '../../deferred.js';
import type { Cgroup, CgroupLimits } from './cgroups.js';

/**
 * Task groups one session may hold at once (each call holds one from before its process starts
 * until the group is removed), and so its calls running at once. Each group is a kernel object
 * of the whole host (a memory cgroup id: 65,535 on v1, shared by every container on it), so a
 * session's share must be bounded whatever its client sends. 32 calls of one session at once is
 * well past what a host's cores make useful; the warm interpreter's socket takes two
 * connections per call in flight (WarmInterpreter's MAX_CONNECTIONS follows this).
 */
export const MAX_TASK_GROUPS = 32;

/**
 * A session's task cgroups: one per call, under the session's group, and one empty group made
 * ahead so that making one is not on the next call's path. At most `max` are in calls' hands
 * (the calls beyond wait for one to be removed: a burst is served as a queue, each waiting call
 * still under its own timeout and cancel), plus at most the one made ahead. Nothing else is kept:
 * a group is removed when its call gives it back.
 */
export class TaskGroups {
  private counter = 0;
  private inUse = 0;
  private readonly waiting: Deferred<void>[] = [];
  private ahead: Promise<Cgroup> | undefined;
  private disposed = false;

  constructor(
    private readonly session: Cgroup,
    private readonly max = MAX_TASK_GROUPS,
  ) {}

  /** A group for one call, narrowed by `limits`; waits (until `signal` aborts) while the session holds its maximum. */
  async take(limits: CgroupLimits, signal: AbortSignal): Promise<Cgroup> {
    await this.slot(signal);
    let group: Cgroup | undefined;
    try {
      const ahead = this.ahead; // taken before any await: concurrent calls never share one
      this.ahead = undefined;
      group = (await ahead?.catch(() => undefined)) ?? (await this.make());
      await group.setLimits(limits);
    } catch (err) {
      this.giveBack(group);
      throw err;
    }
    // Only where none is waiting already: every call refilling it would orphan the one before.
    if (this.ahead === undefined && !this.disposed) {
      this.ahead = this.make();
      this.ahead.catch(() => undefined);
    }
    return group;
  }

  /**
   * Removes a call's group (its processes killed already, or killed now) and then frees its
   * place: the bound counts groups that exist, not calls that run.
   */
  giveBack(group: Cgroup | undefined): void {
    if (!group) {
      this.free();
      return;
    }
    void group
      .destroy()
      .catch(() => undefined)
      .finally(() => this.free());
  }

  /** No more groups made ahead; the one there is settled (the session's group is removed with everything under it). */
  async dispose(): Promise<void> {
    this.disposed = true;
    await this.ahead?.catch(() => undefined);
  }

  private make(): Promise<Cgroup> {
    return this.session.child(`task-${++this.counter}`, {});
  }

  private async slot(signal: AbortSignal): Promise<void> {
    while (this.inUse >= this.max) {
      signal.throwIfAborted();
      const turn = deferred();
      this.waiting.push(turn);
      const onAbort = () => turn.resolve();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        await turn.promise;
      } finally {
        signal.removeEventListener('abort', onAbort);
        const index = this.waiting.indexOf(turn);
        if (index !== -1) this.waiting.splice(index, 1);
      }
      // Woken for a place and aborted at once: the place goes to the next in line.
      if (signal.aborted && this.inUse < this.max) this.waiting.shift()?.resolve();
    }
    signal.throwIfAborted();
    this.inUse++;
  }

  private free(): void {
    this.inUse--;
    this.waiting.shift()?.resolve();
  }
}
