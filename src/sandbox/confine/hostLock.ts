import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { startHostTool } from '../process/hostTools.js';
import { pathExists } from '../../storage/pathExists.js';

/** Exit code flock(1) is told to use when someone else holds the lock. */
const HELD_ELSEWHERE = 75;

/** Who holds a lock, as its holder wrote it down. */
export interface LockHolder {
  pid: number;
  what: string;
}

export type LockResult = { acquired: true; lock: HostLock } | { acquired: false; holder: LockHolder | undefined };

/**
 * An exclusive lock on a file, held by the kernel (flock) for as long as this process lives:
 * util-linux's flock(1) takes it and then waits on a pipe from the worker, so the lock goes when
 * the worker goes, however it goes (kill -9 included), and is never left stale. Node has no
 * flock of its own. Beside the lock, `<file>.holder` names the process that holds it.
 */
export class HostLock {
  private constructor(
    private readonly child: ChildProcess,
    readonly file: string,
  ) {}

  static async acquire(file: string, flock: string, what: string): Promise<LockResult> {
    await mkdir(dirname(file), { recursive: true, mode: 0o755 });
    // Its own process group: a Ctrl-C to the worker's group must not drop the lock while the
    // worker is still shutting down. It ends with the worker's end of the pipe.
    const child = startHostTool(flock, [
      '--nonblock',
      '--conflict-exit-code',
      String(HELD_ELSEWHERE),
      file,
      '/bin/sh',
      '-c',
      'echo locked; exec cat >/dev/null',
    ]);
    child.stdin.on('error', () => undefined);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    const outcome = await new Promise<'locked' | number>((resolve, reject) => {
      child.once('error', reject);
      child.stdout.once('data', () => resolve('locked'));
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? 9 : 0)));
    });
    if (outcome === HELD_ELSEWHERE) return { acquired: false, holder: await readHolder(file) };
    if (outcome !== 'locked') throw new Error(`cannot lock ${file}: flock exited ${outcome}: ${stderr.trim()}`);
    // The lock must not keep the worker's event loop alive, nor outlive it.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr] as unknown as { unref?: () => void }[]) stream.unref?.();
    const holder: LockHolder = { pid: process.pid, what };
    // Only what a refused second worker is told: a full disk must not stop this one from starting.
    await writeFile(`${file}.holder.tmp-${process.pid}`, JSON.stringify(holder))
      .then(() => rename(`${file}.holder.tmp-${process.pid}`, `${file}.holder`))
      .catch(() => rm(`${file}.holder.tmp-${process.pid}`, { force: true }));
    return { acquired: true, lock: new HostLock(child, file) };
  }

  /** Gives the lock back (its holder process ends with the pipe). */
  release(): void {
    this.child.stdin?.end();
  }
}

async function readHolder(file: string): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await readFile(`${file}.holder`, 'utf8')) as Partial<LockHolder>;
    if (typeof holder.pid !== 'number') return undefined;
    // Written just after the lock was taken: a holder that no longer runs is an earlier one.
    if (!(await pathExists(`/proc/${holder.pid}`))) return undefined;
    return { pid: holder.pid, what: String(holder.what ?? '') };
  } catch {
    return undefined;
  }
}
