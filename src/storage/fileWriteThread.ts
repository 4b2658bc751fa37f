import { Worker } from 'node:worker_threads';

/**
 * Small files written atomically (session records, checkpoint and artifact records) on a thread
 * of the worker's own, each in one message. Why not fs.promises: open, write, close and rename
 * are four round trips through libuv's thread pool, each waiting for a busy event loop; a
 * record written before a call's code runs took about 1.9 ms that way, on the call's path. The
 * rename itself is slow on ext4 (it starts the new file's writeback), so it is not done on the
 * event loop either.
 */

/** What the thread runs: fileWriteThread.cjs in the checkout (this module runs from dist/); CommonJS whatever the flags. */
const SCRIPT = new URL('../../../src/storage/fileWriteThread.cjs', import.meta.url);

interface Pending {
  resolve(): void;
  reject(err: Error): void;
}

/** The thread stopped or could not start: the caller writes the file itself. */
export class WriteThreadUnavailableError extends Error {
  override name = 'WriteThreadUnavailableError';
}

class FileWriteThread {
  private readonly worker = new Worker(SCRIPT);
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  dead = false;
  /** Whether it has answered a write: one that stops before it ever does cannot run here. */
  answered = false;

  constructor() {
    this.worker.on('message', ({ id, error, code }: { id: number; error?: string; code?: string }) => {
      const waiting = this.pending.get(id);
      this.pending.delete(id);
      this.answered = true;
      if (this.pending.size === 0) this.worker.unref();
      if (error === undefined) waiting?.resolve();
      else waiting?.reject(Object.assign(new Error(error), code ? { code } : {}));
    });
    const fail = (err: Error) => {
      this.dead = true;
      for (const waiting of this.pending.values()) waiting.reject(new WriteThreadUnavailableError(err.message));
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('the file-writing thread stopped')));
    // Referenced only while it has work: an idle thread never holds the worker's exit.
    this.worker.unref();
  }

  write(file: string, temporary: string, text: string, durable: boolean): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, file, temporary, text, durable });
    });
  }
}

let thread: FileWriteThread | undefined;

/** Starts the thread now (tens of milliseconds), so the first write does not wait for it: start-up calls this. */
export function startWriteThread(): void {
  thread ??= new FileWriteThread();
}

/**
 * Writes `text` to `temporary` (made mode 0600, or emptied if a stopped worker left it), fsynced when `durable`, and renames it
 * over `file`. Rejects with the system call's error (its code kept); WriteThreadUnavailableError
 * when the thread is gone (a new one serves the next write) or never started (none is tried again).
 */
export function writeThroughThread(file: string, temporary: string, text: string, durable: boolean): Promise<void> {
  if (thread?.dead && !thread.answered) return Promise.reject(new WriteThreadUnavailableError('the file-writing thread cannot start here'));
  if (!thread || thread.dead) thread = new FileWriteThread();
  return thread.write(file, temporary, text, durable);
}
