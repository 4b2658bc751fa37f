/**
 * Calls waiting in line for something others give back (a place, a turn). Each waits until it
 * is woken or its signal aborts; a call woken and aborted at once passes the wake to the next,
 * so a wake is never spent on a call that has gone.
 */
export class WaitingLine {
  /** Each waiting call's wake: true when woken, false when its signal aborted (the first to come counts). */
  private readonly line: ((woken: boolean) => void)[] = [];

  get length(): number {
    return this.line.length;
  }

  /**
   * Waits to be woken; rejects with the signal's reason once it aborts. `front`: a call woken
   * that found nothing for it after all keeps its place at the head of the line.
   */
  async wait(signal: AbortSignal, front = false): Promise<void> {
    signal.throwIfAborted();
    let turn!: (woken: boolean) => void;
    const woken = new Promise<boolean>((resolve) => (turn = resolve));
    if (front) this.line.unshift(turn);
    else this.line.push(turn);
    const onAbort = () => turn(false);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if ((await woken) && signal.aborted) this.wakeFirst();
    } finally {
      signal.removeEventListener('abort', onAbort);
      const at = this.line.indexOf(turn);
      if (at !== -1) this.line.splice(at, 1);
    }
    signal.throwIfAborted();
  }

  /** Wakes the call first in line, if any (it leaves the line). */
  wakeFirst(): void {
    this.line.shift()?.(true);
  }
}
