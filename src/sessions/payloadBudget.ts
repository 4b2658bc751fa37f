/**
 * Bytes of replies (fs.read's contents) the worker holds at once, as a counting semaphore: a
 * call that would take more than is left waits its turn, first come first served, until the
 * holders finish or its own call ends. Without it, 70 concurrent fs.read calls
 * of a 60 MB file held 4.7 GB. A need larger than the whole capacity waits for all of it, so it
 * still runs, alone.
 */
export class PayloadBudget {
  private held = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly capacity: number) {}

  /** Takes `bytes` (at most the capacity) when there is room; the function returned gives them back, once. */
  async acquire(bytes: number, signal?: AbortSignal): Promise<() => void> {
    const need = Math.min(Math.max(0, bytes), this.capacity);
    if (this.waiting.length === 0 && this.held + need <= this.capacity) return this.take(need);
    await new Promise<void>((resolve, reject) => {
      const waiter = { bytes: need, grant: resolve };
      this.waiting.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const at = this.waiting.indexOf(waiter);
          if (at < 0) return; // granted already: the caller releases
          this.waiting.splice(at, 1);
          this.grantWaiting();
          reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        },
        { once: true },
      );
    });
    return this.take(need, true);
  }

  private take(bytes: number, granted = false): () => void {
    if (!granted) this.held += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held -= bytes;
      this.grantWaiting();
    };
  }

  /** Grants waiters in order while the first fits. */
  private grantWaiting(): void {
    for (let next = this.waiting[0]; next && this.held + next.bytes <= this.capacity; next = this.waiting[0]) {
      this.waiting.shift();
      this.held += next.bytes;
      next.grant();
    }
  }
}
