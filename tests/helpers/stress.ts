import { fork, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { createWorkerClient, runTask } from '../../src/client/index.js';

/**
 * A session's code run again and again (a run the worker ends starts over), from a client process
 * of its own at the lowest CPU priority, as another tenant's client would be: what it costs to
 * receive the calls' output is its own, not the measuring test's (tests/helpers/flood.ts does the
 * same for fs floods).
 */
export interface Stress {
  /** Resolves once a run has printed a line holding `ready`. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

const MAIN = new URL(import.meta.url).pathname;

/** Starts `copies` loops of `tool` (run.python: `code`; run.shell: `command`) in `sessionId`. */
export function startStress(address: string, sessionId: string, tool: 'run.python' | 'run.shell', code: string, copies = 1): Stress {
  const child: ChildProcess = fork(MAIN, [address, sessionId, tool, code, String(copies)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (child.pid !== undefined) setPriority(child.pid, 19);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (m: { ready?: true }) => m.ready && resolve());
    void exited.then(() => reject(new Error('the stress ended before it was ready')));
  });
  ready.catch(() => undefined);
  return {
    ready,
    async stop() {
      child.send('stop');
      await exited;
    },
  };
}

async function stressMain([address, sessionId, tool, code, copies]: string[]): Promise<void> {
  if (!address || !sessionId || !code || (tool !== 'run.python' && tool !== 'run.shell'))
    throw new Error('usage: stress.js address session-id tool code copies');
  const client = createWorkerClient(address);
  const stop = new AbortController();
  process.on('message', () => stop.abort());
  let announced = false;
  const loop = async () => {
    while (!stop.signal.aborted) {
      await runTask(
        client.tasks,
        { sessionId, toolName: tool, arguments: tool === 'run.python' ? { code } : { command: code } },
        {
          signal: stop.signal,
          onLog: (log) => {
            if (announced || !log.message.includes('ready')) return;
            announced = true;
            process.send!({ ready: true });
          },
        },
      ).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Number(copies) }, loop));
  client.close();
  process.disconnect();
}

if (process.argv[1] === MAIN) await stressMain(process.argv.slice(2));
