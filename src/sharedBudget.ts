import { WaitingLine } from './waitingLine.js';

const NEVER = new AbortController().signal;

/**
 * A bound on how much of one resource the worker's work holds at once, all sessions together
 * (files open to extract, heap for file trees): each holder takes an amount before it uses it,
 * and gives it back once done; a holder that does not fit waits its turn (in line, so a large
 * amount is not passed over for ever). One larger than the bound goes when nothing is held.
 */
export class SharedBudget {
  private open = 0;
  /** The most held at once so far (what the bound is for: seen by tests and benches). */
  peak = 0;
  private readonly line = new WaitingLine();

  constructor(readonly limit: number) {}

  /** What is held now. */
  get held(): number {
    return this.open;
  }

  /** Waits until `count` more fit (or `signal` aborts: it rejects with its reason), then counts them. */
  async hold(count: number, signal: AbortSignal = NEVER): Promise<void> {
    const waits = (woken: boolean) => this.open > 0 && (this.open + count > this.limit || (!woken && this.line.length > 0));
    for (let woken = false; waits(woken); woken = true) await this.line.wait(signal, woken);
    this.open += count;
    this.peak = Math.max(this.peak, this.open);
    // Room left may fit the next in line too.
    if (this.open < this.limit) this.line.wakeFirst();
  }

  release(count: number): void {
    this.open -= count;
    this.line.wakeFirst();
  }
}
