import type { OutputSource } from './processSpec.js';

/** The time and the timers the coalescer uses: the host's, or a test's fake. */
export interface CoalescerClock {
  now(): number;
  /** Runs `run` after `ms` (0: as soon as the event loop turns); the function returned cancels it. */
  schedule(run: () => void, ms: number): () => void;
}

export const realClock: CoalescerClock = {
  now: () => performance.now(),
  schedule(run, ms) {
    if (ms <= 0) {
      const immediate = setImmediate(run);
      return () => clearImmediate(immediate);
    }
    const timer = setTimeout(run, ms);
    return () => clearTimeout(timer);
  },
};

/** How often each stream may send at most, and how much one message holds at most. */
export const COALESCE_INTERVAL_MS = 20;
export const COALESCE_MAX_CHARS = 64 * 1024;

interface Pending {
  lines: string[];
  chars: number;
  /** When its first line came, in arrival order across both streams. */
  since: number;
}

/**
 * Gathers a process's output lines into few messages: a stream sends at most once per
 * COALESCE_INTERVAL_MS, or sooner when its lines reach COALESCE_MAX_CHARS. A task printing
 * short lines as fast as it can would otherwise cost one gRPC message per line, and the
 * worker's one event loop, which every session's calls share, would spend itself on those.
 *
 * Still live: a line after a quiet moment goes out when the event loop next turns, and one
 * within the interval at the interval's end. Both streams go out at the same moments, the one
 * whose oldest waiting line came first first, so the order across them is kept as far as
 * messages of one stream each can keep it. Messages are sent one after the other; `add`
 * returns a promise (to await before reading more) only when a full message must wait for the
 * ones before it, which is the backpressure to the process.
 */
export class OutputCoalescer {
  private readonly pending: Record<OutputSource, Pending> = { stdout: emptyPending(), stderr: emptyPending() };
  private arrivals = 0;
  private lastSentAt = -Infinity;
  private cancelTimer: (() => void) | undefined;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly send: (source: OutputSource, text: string) => void | Promise<void>,
    private readonly clock: CoalescerClock = realClock,
    private readonly intervalMs = COALESCE_INTERVAL_MS,
    private readonly maxChars = COALESCE_MAX_CHARS,
  ) {}

  /** Adds one line (without its ending; at most maxChars long); a promise to await when full. */
  add(source: OutputSource, line: string): Promise<void> | undefined {
    const waiting = this.pending[source];
    const full = waiting.chars > 0 && waiting.chars + line.length > this.maxChars ? this.flush() : undefined;
    const pending = this.pending[source]; // a new one after a flush
    if (pending.lines.length === 0) pending.since = this.arrivals++;
    pending.lines.push(line);
    pending.chars += line.length + 1;
    this.schedule();
    return full;
  }

  /** Sends everything waiting now; resolves once all messages so far are sent (rejects as a send did). */
  flush(): Promise<void> {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const ready = (['stdout', 'stderr'] as const)
      .map((source) => ({ source, ...this.pending[source] }))
      .filter((p) => p.lines.length > 0)
      .sort((a, b) => a.since - b.since);
    if (ready.length > 0) {
      this.lastSentAt = this.clock.now();
      this.pending.stdout = emptyPending();
      this.pending.stderr = emptyPending();
      this.sending = this.sending.then(async () => {
        for (const { source, lines } of ready) await this.send(source, lines.join('\n'));
      });
    }
    return this.sending;
  }

  /** Drops what is waiting and stops the timer (the capture failed; nothing more is sent). */
  close(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.pending.stdout = emptyPending();
    this.pending.stderr = emptyPending();
  }

  private schedule(): void {
    if (this.cancelTimer) return;
    const wait = Math.max(0, this.lastSentAt + this.intervalMs - this.clock.now());
    this.cancelTimer = this.clock.schedule(() => {
      this.cancelTimer = undefined;
      // A failed send is kept in `sending`: the capture's final flush rethrows it.
      this.flush().catch(() => undefined);
    }, wait);
  }
}

function emptyPending(): Pending {
  return { lines: [], chars: 0, since: 0 };
}
