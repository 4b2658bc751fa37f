import { WaitingLine } from '../../waitingLine.js';
import { destroyWhenItCan, type Cgroup, type CgroupLimits } from './cgroups.js';

/**
 * Task groups one session may hold at once (each call holds one from before its process starts
 * until the group is removed), and so its calls running at once. Each group is a kernel object
 * of the whole host (a memory cgroup id: 65,535 on v1, shared by every container on it), so a
 * session's share must be bounded whatever its client sends. 32 calls of one session at once is
 * well past what a host's cores make useful; the warm interpreter's socket takes two
 * connections per call in flight (WarmInterpreter's MAX_CONNECTIONS follows this).
 */
export const MAX_TASK_GROUPS = 32;

const NEVER = new AbortController().signal;

/**
 * A session's task cgroups: one per call, under the session's group. A group its call gives
 * back is emptied, renewed (Cgroup.renew) and kept for a later call: making and removing a
 * group takes the kernel's cgroup locks and leaves it work to do after, the larger part of a
 * short call's cost. One that will not empty is removed, and counted until it is gone (a
 * process in uninterruptible sleep can hold it for minutes). With none kept, one empty group is
 * made ahead so that making one is not on the next call's path. At most `max` exist, in calls'
 * hands or kept (the calls beyond wait for one: a burst is served as a queue, each waiting call
 * still under its own timeout and cancel), plus at most the one made ahead.
 *
 * A call that narrows its memory limit gets a group no call has used: a kept group may still be
 * charged with memory an earlier call left (files in a tmpfs), which would count against it.
 */
export class TaskGroups {
  private counter = 0;
  /** Groups that exist but the one made ahead: in calls' hands, kept, or being removed. */
  private existing = 0;
  /** Groups given back emptied and renewed, the most recently used last. */
  private readonly kept: Cgroup[] = [];
  private readonly waiting = new WaitingLine();
  private ahead: Promise<Cgroup> | undefined;
  private disposed = false;

  constructor(
    private readonly session: Cgroup,
    private readonly max = MAX_TASK_GROUPS,
    /** How long a group that could not be removed waits before it is tried again (then longer each time). */
    private readonly retryMs = 1000,
  ) {}

  /** A group for one call, narrowed by `limits`; waits (until `signal` aborts) while the session holds its maximum. */
  async take(limits: CgroupLimits, signal: AbortSignal): Promise<Cgroup> {
    const claim = await this.claim(signal, limits.memoryBytes !== undefined);
    let group = claim.kept;
    try {
      if (!group) {
        const makingWay = claim.makingWay;
        // Not removed, it keeps its place until it is (and this call fails).
        await makingWay?.destroy().catch((err: unknown) => {
          destroyWhenItCan(makingWay, () => this.release(), this.retryMs);
          throw err;
        });
        try {
          const ahead = this.ahead; // taken before any await: concurrent calls never share one
          this.ahead = undefined;
          group = (await ahead?.catch(() => undefined)) ?? (await this.make());
        } catch (err) {
          this.release();
          throw err;
        }
      }
      await group.setLimits(limits);
    } catch (err) {
      if (group) this.giveBack(group);
      throw err;
    }
    // Only where none is waiting already: every call refilling it would orphan the one before.
    if (this.ahead === undefined && this.kept.length === 0 && !this.disposed) {
      this.ahead = this.make();
      this.ahead.catch(() => undefined);
    }
    return group;
  }

  /**
   * A group for a process waiting for its call (a warm interpreter's child forked ahead),
   * taken as a call takes one, only if one is free now (never waiting, never in a call's way);
   * undefined otherwise. Given back as a call's is.
   */
  reserve(): Promise<Cgroup> | undefined {
    if (!this.available || this.disposed) return undefined;
    return this.take({}, NEVER);
  }

  /**
   * Takes back a call's group (its processes killed already, or killed now): kept for a later
   * call once empty and renewed, else removed, its place freed only then (the bound counts
   * groups that exist, not calls that run).
   */
  giveBack(group: Cgroup | undefined): void {
    if (!group) {
      this.release();
      return;
    }
    void group
      .killProcesses()
      .then((empty) => {
        if (!empty || this.disposed) throw new Error('not kept');
        group.renew();
        this.kept.push(group);
        this.waiting.wakeFirst();
      })
      .catch(() =>
        group.destroy().then(
          () => this.release(),
          // Its processes will not die yet: its place stays taken until it is gone.
          () => destroyWhenItCan(group, () => this.release(), this.retryMs),
        ),
      );
  }

  /** No more groups made ahead or kept; the one made ahead is settled (the session's group is removed with everything under it). */
  async dispose(): Promise<void> {
    this.disposed = true;
    this.kept.length = 0;
    await this.ahead?.catch(() => undefined);
  }

  private make(): Promise<Cgroup> {
    return this.session.child(`task-${++this.counter}`, {});
  }

  /** Whether a call may have a group now: a kept one, or a place for one more. */
  private get available(): boolean {
    return this.kept.length > 0 || this.existing < this.max;
  }

  /**
   * Waits for a group and claims it, in the same turn as it is seen free: a kept group, or a
   * place for a new one (`unused`: a call that must have a new one), or, all places taken,
   * a kept group that must make way for it (its place passes to the new one).
   */
  private async claim(signal: AbortSignal, unused: boolean): Promise<{ kept?: Cgroup; makingWay?: Cgroup }> {
    // Woken and none free after all (another call took it first), a call keeps its place first in line.
    for (let woken = false; !this.available; woken = true) await this.waiting.wait(signal, woken);
    signal.throwIfAborted();
    if (!unused && this.kept.length > 0) return { kept: this.kept.pop()! };
    if (this.existing < this.max) {
      this.existing++;
      return {};
    }
    return { makingWay: this.kept.shift()! };
  }

  /** A group is gone (or was never made): its place goes to the next in line. */
  private release(): void {
    this.existing--;
    this.waiting.wakeFirst();
  }
}
