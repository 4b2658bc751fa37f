/**
 * A bounded hand-off from a producer (a running tool) to the one consumer (the response
 * stream). push() resolves once there is room, so a slow client slows the producer (and, through
 * pipe backpressure, the process) instead of growing memory. After close() pushes are dropped.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private closed = false;
  private wakeConsumer: (() => void) | undefined;
  private readonly roomWaiters: (() => void)[] = [];

  constructor(private readonly highWaterMark = 256) {}

  push(item: T): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.items.push(item);
    this.wake();
    if (this.items.length < this.highWaterMark) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    this.wake();
    this.releaseProducers();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (true) {
      const item = this.items.shift();
      if (item !== undefined) {
        if (this.items.length < this.highWaterMark) this.releaseProducers();
        yield item;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
    }
  }

  private wake(): void {
    const wake = this.wakeConsumer;
    this.wakeConsumer = undefined;
    wake?.();
  }

  private releaseProducers(): void {
    for (const release of this.roomWaiters.splice(0)) release();
  }
}
