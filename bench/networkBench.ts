import { NetworkMode } from '../gen/codegen/v1/common.js';
import { makeFakeInternet } from '../tests/helpers/fakeInternet.js';
import { runTool } from '../tests/helpers/tasks.js';
import { startWorker } from '../tests/helpers/worker.js';
import { timed } from './timing.js';

/**
 * A session's connections go through the worker's egress proxy: what that costs a connection
 * (connect, an HTTP request, its answer) against the same from the worker's own namespace, both
 * to a server of a fake internet (tests/helpers/fakeInternet.ts: nothing leaves the machine).
 * And CreateSession of a session with a network (its namespace comes with a spare).
 */

export interface NetworkMeasure {
  /** One connect + GET + answer, ms: from a session (OPEN, and ALLOW_LIST naming the host), and from the host. */
  openMs: number[];
  allowListMs: number[];
  hostMs: number[];
  /** CreateSession with NETWORK_MODE_OPEN, ms. */
  createOpenMs: number[];
}

const API = '203.0.113.10';

/** Times `rounds` connections to api.test:80, each one request and its whole answer; one line of ms each. */
const CONNECTIONS = (rounds: number) => String.raw`
import socket, time
address = socket.gethostbyname('api.test')
for i in range(${rounds + 20}):
    start = time.perf_counter()
    s = socket.create_connection((address, 80), timeout=5)
    s.sendall(b'GET / HTTP/1.0\r\nHost: api.test\r\n\r\n')
    while s.recv(65536): pass
    s.close()
    if i >= 20: print((time.perf_counter() - start) * 1000)
`;

export async function networkBench(python: string, rounds = 200): Promise<NetworkMeasure> {
  const net = await makeFakeInternet({ names: { 'api.test': API } });
  try {
    const worker = await startWorker({
      namespace: net,
      env: { WORKER_DNS_SERVERS: net.dnsServer, WORKER_SPARE_SESSIONS: '4', WORKER_LOG_LEVEL: 'info', WORKER_MAX_SESSIONS: '40' },
    });
    try {
      const session = async (mode: NetworkMode, allow: string[] = []) =>
        (await worker.sessions.createSession({ workspaceId: 'bench-net', config: { network: { mode, allow } } })).sessionId;
      const inSession = async (sessionId: string) =>
        (await runTool(worker.tasks, sessionId, 'run.python', { code: CONNECTIONS(rounds) })).stdout!.trim().split('\n').map(Number);
      const openMs = await inSession(await session(NetworkMode.NETWORK_MODE_OPEN));
      const allowListMs = await inSession(await session(NetworkMode.NETWORK_MODE_ALLOW_LIST, ['api.test']));
      const host = net.spawnInWorkerNamespace([python, '-c', CONNECTIONS(rounds)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      host.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((resolve) => host.once('exit', resolve));
      const hostMs = out.trim().split('\n').map(Number);
      await new Promise((r) => setTimeout(r, 2000)); // the spares taken above made again
      const createOpenMs = await timed(20, () => session(NetworkMode.NETWORK_MODE_OPEN));
      return { openMs, allowListMs, hostMs, createOpenMs };
    } finally {
      await worker.stop();
    }
  } finally {
    await net.close();
  }
}
