import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { startHostTool } from '../process/hostTools.js';

/**
 * The worker's end of diskHelper.py (its head gives both ends of the protocol): a root Python
 * process, started on first use and again if it dies, that mounts session disks (loop devices)
 * and makes a fork's disk copies (syncfs and reflinks) and idmapped mounts with system calls,
 * where a process per step (mount, sh, sync, cp, a Python for the mount API) cost tens of
 * milliseconds a fork.
 *
 * Idmapped mounts: a session's disk seen with its files' owner changed, in no time. A fork's disk
 * (a copy of its source's, owned on disk by the source's uid) and a session adopted with another
 * uid show the files the disk holds for its uid on disk as the session's, and store what the
 * session makes as that uid's, without touching a file; a chown of every file took seconds on a
 * large tree (each inode of a reflinked image copied on write).
 */

const SOURCE = readFileSync(new URL('../../../../src/sandbox/confine/diskHelper.py', import.meta.url), 'utf8');

/** A line the helper answers: ok (and what the request gives), or the error. */
type Reply = { ok?: boolean; error?: string } & Record<string, unknown>;

export class DiskHelper {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly waiting: { resolve: (reply: Reply) => void; reject: (err: Error) => void }[] = [];

  /**
   * Syncs the disk mounted at `mountPoint` and checkpoints its journal, then makes each target a
   * reflink of its image (at one instant of it); the milliseconds its writers waited.
   */
  async clone(mountPoint: string, image: string, targets: string[]): Promise<{ pausedMs: number }> {
    const reply = await this.request({ clone: { mount: mountPoint, image, targets } });
    return { pausedMs: typeof reply.paused_ms === 'number' ? Math.round(reply.paused_ms) : 0 };
  }

  /** Makes `file` (it must not exist; mode 0600) a sparse copy of `template`: cp --sparse=always's work, no process. */
  async copy(template: string, file: string): Promise<void> {
    await this.request({ copy: { from: template, to: file } });
  }

  /** Attaches the ext4 image `file` to a loop device and mounts it on `mountPoint` (nosuid, nodev): mount -o loop's work, no process. */
  async mount(file: string, mountPoint: string): Promise<void> {
    await this.request({ mount: { image: file, point: mountPoint } });
  }

  /** Remounts the disk at `mountPoint` so `diskUid`'s files are `uid`'s (gids alike); the ids of `keep` stay themselves. */
  async idmap(mountPoint: string, diskUid: number, uid: number, keep: number[]): Promise<void> {
    const lines = [...new Set(keep)].filter((id) => id !== diskUid && id !== uid).map((id) => `${id} ${id} 1`);
    await this.request({ idmap: { mount: mountPoint, lines: [...lines, `${diskUid} ${uid} 1`] } });
  }

  /** Ends the helper (shutdown); a later request starts it again. */
  close(): void {
    this.child?.stdin.end();
  }

  private request(body: object): Promise<Reply> {
    const child = this.started();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      child.stdin.write(`${JSON.stringify(body)}\n`);
    });
  }

  private started(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = startHostTool('python3', ['-I', '-S', '-c', SOURCE]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.stdin.on('error', () => undefined);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      const next = this.waiting.shift();
      if (reply.ok) next?.resolve(reply);
      else next?.reject(new Error(`disk helper: ${reply.error ?? line}`));
    });
    const ended = (why: string) => {
      if (this.child !== child) return;
      this.child = undefined;
      for (const next of this.waiting.splice(0)) next.reject(new Error(`the disk helper ${why}${stderr ? `: ${stderr.trim()}` : ''}`));
    };
    child.on('exit', (code, signal) => ended(`exited (${signal ?? `code ${code}`})`));
    child.on('error', (err) => ended(`could not run (${err.message})`));
    this.child = child;
    return child;
  }
}
