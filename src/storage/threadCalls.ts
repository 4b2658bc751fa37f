import { Worker, type WorkerOptions } from 'node:worker_threads';

/** A thread's answer to one message: its fields, under the message's id. */
export type ThreadAnswer = Record<string, unknown>;

/**
 * A worker thread asked things by message, each answered under the message's id (the thread's
 * script posts `{ id, ...answer }`). Referenced only while something waits: an idle thread never
 * holds the worker's exit. When it stops, everything waiting is rejected with `stopped(why)`.
 */
export class ThreadCalls {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve(answer: ThreadAnswer): void; reject(err: Error): void }>();
  private nextId = 0;
  /** The thread has stopped (or never started): a new one serves what comes next. */
  dead = false;
  /** Whether it has answered anything: one that stops before it ever does cannot run here. */
  answered = false;

  constructor(script: string | URL, options: WorkerOptions, stopped: (why: string) => Error) {
    this.worker = new Worker(script, options);
    this.worker.on('message', ({ id, ...answer }: { id: number } & ThreadAnswer) => {
      const waiting = this.pending.get(id);
      this.pending.delete(id);
      this.answered = true;
      if (this.pending.size === 0) this.worker.unref();
      waiting?.resolve(answer);
    });
    const fail = (why: string) => {
      this.dead = true;
      for (const waiting of this.pending.values()) waiting.reject(stopped(why));
      this.pending.clear();
    };
    this.worker.on('error', (err) => fail(err.message));
    this.worker.on('exit', () => fail('the thread stopped'));
    // Adding a listener refs it again.
    this.worker.unref();
  }

  /** Messages sent and not yet answered. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Posts `message` (with an id added); resolves with the thread's answer to it. */
  call(message: object): Promise<ThreadAnswer> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...message });
    });
  }
}
