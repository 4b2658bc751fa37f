import { ThreadCalls } from './threadCalls.js';

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

/** The thread stopped or could not start: the caller writes the file itself. */
export class WriteThreadUnavailableError extends Error {
  override name = 'WriteThreadUnavailableError';
}

/** The thread: one file written atomically per message (fileWriteThread.cjs). */
let thread: ThreadCalls | undefined;
const newThread = () => new ThreadCalls(SCRIPT, {}, (why) => new WriteThreadUnavailableError(why));

/** Starts the thread now (tens of milliseconds), so the first write does not wait for it: start-up calls this. */
export function startWriteThread(): void {
  thread ??= newThread();
}

/**
 * Writes `text` to `temporary` (made mode 0600, or emptied if a stopped worker left it), fsynced
 * when `durable`, and renames it over `file`. Rejects with the system call's error (its code
 * kept); WriteThreadUnavailableError when the thread is gone (a new one serves the next write)
 * or never started (none is tried again).
 */
export async function writeThroughThread(file: string, temporary: string, text: string, durable: boolean): Promise<void> {
  if (thread?.dead && !thread.answered) throw new WriteThreadUnavailableError('the file-writing thread cannot start here');
  if (!thread || thread.dead) thread = newThread();
  const { error, code } = (await thread.call({ file, temporary, text, durable })) as { error?: string; code?: string };
  if (error !== undefined) throw Object.assign(new Error(error), code ? { code } : {});
}
