import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTask, runTool, waitFor } from '../tests/helpers/tasks.js';
import type { RunningWorker } from '../tests/helpers/worker.js';
import { timed } from './timing.js';

/**
 * Background processes and their ports: a request through a port URL (a session's background
 * http.server) against the same request to the same server run on the host's loopback; and
 * proc.stdin to the echo of a background `cat` seen by a proc.output follow, against an echo
 * task over gRPC (the floor of any round trip through the worker).
 */
export interface ProcessesMeasure {
  portUrlMs: number[];
  directMs: number[];
  stdinEchoMs: number[];
  echoTaskMs: number[];
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function processesBench(worker: RunningWorker, python: string): Promise<ProcessesMeasure> {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'processes-bench' });
  const host = await freePort();
  const served = await mkdtemp(join(tmpdir(), 'processes-bench-'));
  await writeFile(join(served, 'page.txt'), 'x'.repeat(1024));
  const direct = spawn(python, ['-m', 'http.server', String(host), '--bind', '127.0.0.1'], { stdio: 'ignore', cwd: served });
  try {
    await runTool(worker.tasks, sessionId, 'fs.write', { path: 'page.txt', contents: 'x'.repeat(1024) });
    const web = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'exec python3 -m http.server 8000 --bind 127.0.0.1', background: 'true' });
    const { url } = await runTool(worker.tasks, sessionId, 'port.url', { port: '8000' });
    const get = async (address: string) => {
      const answer = await fetch(address);
      if (answer.status !== 200) throw new Error(`${address}: ${answer.status}`);
      await answer.arrayBuffer();
    };
    await waitFor(async () => (await fetch(`${url}page.txt`).catch(() => undefined))?.status === 200, 20_000);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${host}/`).catch(() => undefined))?.status === 200, 20_000);
    const portUrlMs = await timed(30, () => get(`${url}page.txt`));
    const directMs = await timed(30, () => get(`http://127.0.0.1:${host}/page.txt`));
    await runTool(worker.tasks, sessionId, 'proc.signal', { process_id: web.process_id!, signal: 'KILL' });

    // proc.stdin → cat → the follower's log.
    const cat = await runTool(worker.tasks, sessionId, 'run.shell', { command: 'exec cat', background: 'true' });
    const seen: { line: string; at: number }[] = [];
    const follow = new AbortController();
    const following = (async () => {
      for await (const message of worker.tasks.executeTask(
        { sessionId, toolName: 'proc.output', arguments: { process_id: cat.process_id!, follow: 'true' } },
        { signal: follow.signal },
      )) {
        if (message.payload?.$case === 'log') for (const line of message.payload.value.message.split('\n')) seen.push({ line, at: performance.now() });
      }
    })().catch(() => undefined);
    const stdinEchoMs: number[] = [];
    for (let i = 0; i < 30; i++) {
      const line = `line-${i}`;
      const started = performance.now();
      await runTool(worker.tasks, sessionId, 'proc.stdin', { process_id: cat.process_id!, data: `${line}\n` });
      await waitFor(() => seen.some((s) => s.line === line), 10_000);
      stdinEchoMs.push(seen.find((s) => s.line === line)!.at - started);
    }
    follow.abort();
    await following;
    const echoTaskMs = await timed(30, async () => {
      await runTask(worker.tasks, { sessionId, toolName: 'echo', arguments: { message: 'x' } });
    });
    return { portUrlMs, directMs, stdinEchoMs, echoTaskMs };
  } finally {
    direct.kill();
    await rm(served, { recursive: true, force: true });
    await worker.sessions.destroySession({ sessionId }).catch(() => undefined);
  }
}
