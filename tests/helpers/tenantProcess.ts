import { fork, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';

/**
 * Another tenant's client, in a process of its own at the lowest CPU priority: what it costs to
 * make its calls and take in their replies is its own, not the measuring test's, and it gets
 * this machine's CPU only when the worker and the measured neighbour leave some (it would run
 * on a machine of its own). The child runs `main` with `args`, talks over IPC, and ends when
 * sent 'stop' (tests/helpers/flood.ts, tests/helpers/stress.ts).
 */
export interface TenantProcess {
  readonly child: ChildProcess;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
  /** Tells it to stop, and waits for it to exit. */
  stop(): Promise<void>;
}

export function forkTenant(main: string, args: string[]): TenantProcess {
  const child = fork(main, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (child.pid !== undefined) setPriority(child.pid, 19);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    async stop() {
      if (child.connected) child.send('stop');
      await exited;
    },
  };
}
