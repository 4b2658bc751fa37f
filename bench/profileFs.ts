import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials } from '@grpc/grpc-js';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { createWorkerClient } from '../src/client/index.js';
import { runTask } from '../tests/helpers/tasks.js';
import { startWorker } from '../tests/helpers/worker.js';
import { spawnBareServer } from './bareServer.js';

/**
 * Scratch profiler for fs.write + fs.read of N MB (base64), in one run against: Node's writeFile +
 * readFile, the same two calls to a bare grpc-js server with the generated codec (bareFsServer.ts),
 * and the same bytes through a bare grpc-js call with no codec. `node dist/bench/profileFs.js [mb...]`;
 * WORKER_NODE_OPTIONS go to the worker's node (`--require` a profiler: --cpu-prof is refused there).
 */
const sizes = process.argv.slice(2).map(Number);
const worker = await startWorker({ env: { WORKER_LOG_LEVEL: 'info', NODE_OPTIONS: process.env.WORKER_NODE_OPTIONS } });
async function startBare(env: Record<string, string> = {}) {
  const { port, stop } = await spawnBareServer('bareFsServer.js', env);
  return { stop, port, tasks: createWorkerClient(`127.0.0.1:${port}`, { maxMessageBytes: 256 * 1024 * 1024 }).tasks };
}
const bare = await startBare();
const wideBare = await startBare({ BARE_SERVER_WINDOW_BYTES: String(16 * 1024 * 1024) });
const barePort = bare.port;
const raw = new Client(`127.0.0.1:${barePort}`, credentials.createInsecure(), {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
});
const identity = (b: Buffer) => b;
const rawEcho = (b: Buffer) =>
  new Promise<Buffer>((resolve, reject) =>
    raw.makeUnaryRequest('/bare.Bytes/Echo', identity, identity, b, (err, reply) => (err ? reject(err) : resolve(reply!))),
  );
const scratch = await mkdtemp(join(tmpdir(), 'profile-fs-'));
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1] ?? NaN;
const time = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};
try {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'p' });
  for (const mb of sizes.length ? sizes : [1, 32]) {
    const bytes = Buffer.alloc(mb * 1024 * 1024, 7);
    const b64 = bytes.toString('base64');
    const n = mb <= 1 ? 20 : 5;
    const rows: Record<'write' | 'read' | 'node' | 'bareCodec' | 'bareCodecWide' | 'bareBytes', number[]> = {
      write: [],
      read: [],
      node: [],
      bareCodec: [],
      bareCodecWide: [],
      bareBytes: [],
    };
    for (let i = 0; i < n + 2; i++) {
      const sample: Record<string, number> = {};
      for (const [name, tasks] of [
        ['', worker.tasks],
        ['bareCodec', bare.tasks],
        ['bareCodecWide', wideBare.tasks],
      ] as const) {
        let w: Awaited<ReturnType<typeof runTask>> | undefined;
        let r: typeof w;
        const tw = await time(
          async () => (w = await runTask(tasks, { sessionId, toolName: 'fs.write', arguments: { path: 'blob.bin', contents: b64, encoding: 'base64' } })),
        );
        const tr = await time(async () => (r = await runTask(tasks, { sessionId, toolName: 'fs.read', arguments: { path: 'blob.bin', encoding: 'base64' } })));
        if (w?.result?.status !== TaskStatus.STATUS_SUCCESS || r?.result?.outputs.contents?.length !== b64.length)
          throw new Error(`${name} failed ${w?.error ?? r?.error}`);
        if (name === '') Object.assign(sample, { write: tw, read: tr });
        else sample[name] = tw + tr;
      }
      sample.node = await time(async () => {
        await writeFile(join(scratch, 'blob.bin'), bytes);
        await readFile(join(scratch, 'blob.bin'));
      });
      sample.bareBytes = await time(async () => {
        await rawEcho(Buffer.from(b64, 'latin1'));
      });
      if (i < 2) continue; // warm-up
      for (const [key, row] of Object.entries(rows)) row.push(sample[key]!);
    }
    const ours = median(rows.write.map((x, i) => x + rows.read[i]!));
    const [node, codec, wide, bytesOnly] = [median(rows.node), median(rows.bareCodec), median(rows.bareCodecWide), median(rows.bareBytes)];
    console.log(
      `${mb} MB: ours ${ours.toFixed(1)} ms (write ${median(rows.write).toFixed(1)}, read ${median(rows.read).toFixed(1)}) = ${(ours / node).toFixed(2)}× node ${node.toFixed(1)} ms; ` +
        `bare grpc-js with the codec ${codec.toFixed(1)} ms = ${(codec / node).toFixed(2)}×, its server with a 16 MiB window ${wide.toFixed(1)} ms = ${(wide / node).toFixed(2)}×; bare bytes echo ${bytesOnly.toFixed(1)} ms = ${(bytesOnly / node).toFixed(2)}×`,
    );
  }
} finally {
  raw.close();
  bare.stop();
  wideBare.stop();
  await worker.stop();
  await rm(scratch, { recursive: true, force: true });
}
