/**
 * How fast, and how many at once, the worker receives large requests (a 32 MB fs.write): the
 * decisions, with no grpc-js in them (pacedIntake.ts applies them to grpc-js's calls). Receiving
 * a large request costs the worker's event loop, the kernel (socket copies, page faults, the
 * write-back of what it writes) and the machine's cores in proportion to its bytes; a session
 * sending them as fast as its connection allows took most of a 2-core machine, and other
 * sessions' run.python calls took 4–6× their idle time.
 * - **At once**: large requests being received hold at most `bytesAtOnce` of their announced sizes
 *   together; the rest wait, first come first served, before their first bytes are taken in (a
 *   request larger than all of it waits for all, then runs alone). Before this, 16 × 32 MB
 *   requests of one session were all received at once, whatever that session's payload share.
 *   A request that takes in nothing for `stallMs` while others wait is told to end (its call
 *   fails RESOURCE_EXHAUSTED): a client that announces a large request and stops sending cannot
 *   hold everyone else's uploads.
 * - **Pace**: while an interactive call (any call whose request is small) is in flight (one began
 *   less than `BUSY_YOUNG_MS` ago), or one ended less than `BUSY_LINGER_MS` ago, large requests
 *   and large replies (a 32 MB fs.read) together are taken in and sent at most
 *   `bytesPerSecondWhileBusy`; a lone upload or download is never slowed.
 */

/** Requests announced at this size or more are large, and replies of it. */
export const LARGE_REQUEST_BYTES = 1024 * 1024;

/** How long after its last interactive call the worker still counts as busy: back-to-back calls keep it so. */
export const BUSY_LINGER_MS = 200;

/**
 * How long an interactive call in flight keeps the worker busy after it began. The pace protects
 * calls that are quick; a call still in flight after this is waiting for its turn (48 fs.reads
 * at once) or is long work itself, and would otherwise hold every transfer to the pace.
 */
export const BUSY_YOUNG_MS = 1_000;

export interface BulkIntakeOptions {
  bytesAtOnce: number;
  /** 0: never paced. */
  bytesPerSecondWhileBusy: number;
  /** How long a request holding its turn may take in nothing while others wait (0: forever). */
  stallMs?: number;
  /** Milliseconds, monotonic (tests give a fake). */
  now?: () => number;
}

export interface Admission {
  /** Whether the request may be taken in now; if not, `onGrant` runs when it may. */
  granted: boolean;
  /** Gives its bytes back (or leaves the queue), once; later calls do nothing. */
  release(): void;
  /** Some of its bytes arrived (or the pace, not the client, held it): it is not stalled. */
  progress(): void;
}

export interface InteractiveCall {
  end(): void;
  turnedBulk(): void;
}

interface Holder {
  lastProgress: number;
  stalled: boolean;
  onStall: () => void;
}

export class BulkIntake {
  private held = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];
  private interactive = 0;
  private lastInteractive = -Infinity;
  private lastInteractiveStart = -Infinity;
  /** Bytes the pace still allows at once (negative: owed, to be waited for). */
  private allowance = 0;
  private allowanceAt = 0;
  private readonly now: () => number;
  private readonly holders = new Set<Holder>();
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(readonly options: BulkIntakeOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Asks to take in a large request of `bytes`; `onGrant` runs when a waiting one may go on, and
   * `onStall` (once) when it holds its turn, takes in nothing for stallMs, and others wait.
   */
  admit(bytes: number, onGrant: () => void, onStall: () => void = () => undefined): Admission {
    const need = Math.min(Math.max(0, bytes), this.options.bytesAtOnce);
    let state: 'waiting' | 'holding' | 'done' = 'holding';
    const holder: Holder = { lastProgress: this.now(), stalled: false, onStall };
    const hold = () => {
      state = 'holding';
      holder.lastProgress = this.now();
      this.holders.add(holder);
    };
    const waiter = { bytes: need, grant: () => (hold(), onGrant()) };
    if (this.waiting.length === 0 && this.held + need <= this.options.bytesAtOnce) {
      this.held += need;
      hold();
    } else {
      state = 'waiting';
      this.waiting.push(waiter);
      this.watchStalls();
    }
    return {
      granted: state === 'holding',
      release: () => {
        if (state === 'holding') this.held -= need;
        else if (state === 'waiting') this.waiting.splice(this.waiting.indexOf(waiter), 1);
        else return;
        state = 'done';
        this.holders.delete(holder);
        this.grantWaiting();
      },
      progress: () => void (holder.lastProgress = this.now()),
    };
  }

  /** Tells each holder that took in nothing for stallMs, while others wait, to end (the timer's work; tests call it). */
  checkStalls(): void {
    const stallMs = this.options.stallMs ?? 0;
    if (this.waiting.length === 0 || stallMs <= 0) return;
    for (const holder of this.holders) {
      if (holder.stalled || this.now() - holder.lastProgress < stallMs) continue;
      holder.stalled = true;
      holder.onStall();
    }
  }

  /** Checks for stalled holders while any request waits. */
  private watchStalls(): void {
    const stallMs = this.options.stallMs ?? 0;
    if (this.stallTimer || stallMs <= 0) return;
    this.stallTimer = setInterval(() => {
      if (this.waiting.length > 0) return this.checkStalls();
      clearInterval(this.stallTimer);
      this.stallTimer = undefined;
    }, stallMs / 4);
    this.stallTimer.unref();
  }

  /**
   * An interactive call began: `end` says it ended (once); `turnedBulk` says it is sending a large
   * reply, so it no longer counts, neither now nor as a call that just ended (a lone download is
   * never slowed by itself).
   */
  interactiveCall(): InteractiveCall {
    this.interactive++;
    this.lastInteractiveStart = this.now();
    let ended = false;
    const stop = (busyAfter: boolean) => {
      if (ended) return;
      ended = true;
      this.interactive--;
      if (busyAfter) this.lastInteractive = this.now();
    };
    return { end: () => stop(true), turnedBulk: () => stop(false) };
  }

  /**
   * Whether interactive calls are being served (large transfers are paced then): calls are in
   * flight and the last began less than BUSY_YOUNG_MS ago, or one ended less than BUSY_LINGER_MS ago.
   */
  busy(): boolean {
    const now = this.now();
    return (this.interactive > 0 && now - this.lastInteractiveStart < BUSY_YOUNG_MS) || now - this.lastInteractive < BUSY_LINGER_MS;
  }

  /**
   * `bytes` of a large request were just taken in, or a large reply is about to be sent: how many
   * milliseconds to wait before going on (0: at once). Requests and replies share one pace, so
   * their waits queue up behind each other.
   */
  took(bytes: number): number {
    const rate = this.options.bytesPerSecondWhileBusy / 1000;
    const now = this.now();
    // A burst of 20 ms at the pace: small enough that a call arriving meets little backlog.
    const burst = Math.max(256 * 1024, rate * 20);
    if (rate <= 0 || !this.busy()) {
      this.allowance = burst;
      this.allowanceAt = now;
      return 0;
    }
    this.allowance = Math.min(burst, this.allowance + (now - this.allowanceAt) * rate) - bytes;
    this.allowanceAt = now;
    return this.allowance >= 0 ? 0 : -this.allowance / rate;
  }

  /** Grants waiters in order while the first fits. */
  private grantWaiting(): void {
    for (let next = this.waiting[0]; next && this.held + next.bytes <= this.options.bytesAtOnce; next = this.waiting[0]) {
      this.waiting.shift();
      this.held += next.bytes;
      next.grant();
    }
  }
}
