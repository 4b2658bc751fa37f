import { EventEmitter, setMaxListeners } from 'node:events';
import { createWorkerClient } from '../../src/client/index.js';
import { runTask } from './tasks.js';
import { forkTenant } from './tenantProcess.js';

/**
 * One session flooding the worker with large fs calls, from another tenant's client process
 * (tests/helpers/tenantProcess.ts: its decoding of 32 MB replies must not stall the measuring
 * client's event loop, though it still takes its share of the machine's cores). `read`: `concurrency` fs.read
 * calls of `path` at a time, each reply compared with the file's known contents; `write`:
 * `concurrency` fs.write calls of `mb` MB at a time to distinct paths. Runs until told to stop.
 */

export type FloodKind = 'read' | 'write';

export interface FloodReport {
  /** Calls that answered as they should (the whole file, or its size written). */
  ok: number;
  /** Calls that answered wrongly, with the first few descriptions. */
  bad: number;
  problems: string[];
}

export interface Flood {
  /** Resolves once the first call of the flood has answered. */
  started: Promise<void>;
  /** Resolves once `calls` calls have answered whole (a paced flood is slow, never stopped); rejects after `ms`. */
  answered(calls: number, ms: number): Promise<void>;
  stop(): Promise<FloodReport>;
}

const MAIN = new URL(import.meta.url).pathname;

/** Starts a flood in a child process against `address` (the file to read, `path`, holds `mb` MB of 'x'). */
export function startFlood(address: string, sessionId: string, kind: FloodKind, options: { concurrency: number; mb: number; path?: string }): Flood {
  const tenant = forkTenant(MAIN, [address, sessionId, kind, String(options.concurrency), String(options.mb), options.path ?? 'big.txt']);
  let report: FloodReport | undefined;
  let answered = 0;
  const progress = new EventEmitter();
  const started = new Promise<void>((resolve, reject) => {
    tenant.child.on('message', (m: { started?: true; answered?: number; report?: FloodReport }) => {
      if (m.started) resolve();
      if (m.answered !== undefined) progress.emit('answered', (answered = m.answered));
      if (m.report) report = m.report;
    });
    void tenant.exited.then(() => reject(new Error('the flood ended before its first call answered')));
  });
  started.catch(() => undefined);
  return {
    started,
    answered: (calls, ms) =>
      new Promise<void>((resolve, reject) => {
        if (answered >= calls) return resolve();
        const timer = setTimeout(() => reject(new Error(`the flood answered ${answered} calls in ${ms} ms, not ${calls}`)), ms);
        const check = (n: number) => n >= calls && (clearTimeout(timer), progress.off('answered', check), resolve());
        progress.on('answered', check);
      }),
    async stop() {
      await tenant.stop();
      if (!report) throw new Error('the flood process sent no report');
      return report;
    },
  };
}

async function floodMain([address, sessionId, kind, concurrency, mb, path]: string[]): Promise<void> {
  if (address === undefined || sessionId === undefined || path === undefined) throw new Error('usage: flood.js address session-id kind concurrency mb path');
  const client = createWorkerClient(address, { maxMessageBytes: 256 * 1024 * 1024 });
  const stop = new AbortController();
  process.on('message', () => stop.abort());
  const size = Number(mb) * 1024 * 1024;
  const expected = 'x'.repeat(size);
  const report: FloodReport = { ok: 0, bad: 0, problems: [] };
  let announced = false;
  setMaxListeners(0, stop.signal);
  const one = async (worker: number, round: number) => {
    const call =
      kind === 'read'
        ? runTask(client.tasks, { sessionId, toolName: 'fs.read', arguments: { path } }, stop.signal)
        : runTask(client.tasks, { sessionId, toolName: 'fs.write', arguments: { path: `flood-${worker}.txt`, contents: expected } }, stop.signal);
    const run = await call.catch((err: unknown) => {
      if (stop.signal.aborted) return undefined; // stopped mid-call
      throw err;
    });
    if (!run || stop.signal.aborted) return;
    const good = kind === 'read' ? run.result?.outputs.contents === expected : run.result?.outputs.bytes_written === String(size);
    if (good) process.send!({ answered: ++report.ok });
    else {
      report.bad++;
      if (report.problems.length < 3) report.problems.push(`${kind} ${worker}/${round}: ${run.code} ${run.error?.details ?? ''} ${run.result?.error ?? ''}`);
    }
    if (!announced) {
      announced = true;
      process.send!({ started: true });
    }
  };
  await Promise.all(
    Array.from({ length: Number(concurrency) }, async (_, worker) => {
      for (let round = 0; !stop.signal.aborted; round++) await one(worker, round);
    }),
  );
  process.send!({ report }, () => {
    client.close();
    process.disconnect();
  });
}

if (process.argv[1] === MAIN) await floodMain(process.argv.slice(2));
