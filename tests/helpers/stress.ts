import { setMaxListeners } from 'node:events';
import { createWorkerClient, runTask } from '../../src/client/index.js';
import { forkTenant } from './tenantProcess.js';

/**
 * A session's code run again and again (a run the worker ends starts over), from another
 * tenant's client process (tests/helpers/tenantProcess.ts).
 */
export interface Stress {
  /** Resolves once a run has printed a line holding `ready`. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

const MAIN = new URL(import.meta.url).pathname;

/** Starts `copies` loops of `tool` (run.python: `code`; run.shell: `command`) in `sessionId`. */
export function startStress(address: string, sessionId: string, tool: 'run.python' | 'run.shell', code: string, copies = 1): Stress {
  const tenant = forkTenant(MAIN, [address, sessionId, tool, code, String(copies)]);
  const ready = new Promise<void>((resolve, reject) => {
    tenant.child.on('message', (m: { ready?: true }) => m.ready && resolve());
    void tenant.exited.then(() => reject(new Error('the stress ended before it was ready')));
  });
  ready.catch(() => undefined);
  return { ready, stop: () => tenant.stop() };
}

async function stressMain([address, sessionId, tool, code, copies]: string[]): Promise<void> {
  if (!address || !sessionId || !code || (tool !== 'run.python' && tool !== 'run.shell'))
    throw new Error('usage: stress.js address session-id tool code copies');
  const client = createWorkerClient(address);
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per call in flight
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
