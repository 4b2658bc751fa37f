import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import type { TaskRequest, TaskResponse } from '../gen/codegen/v1/task_execution.js';
import { bareServer, EXECUTE_TASK } from './bareServer.js';

/**
 * The fs floor: a bare @grpc/grpc-js server in its own process, like the worker, answering
 * ExecuteTask's fs.write and fs.read on a plain file with the generated codec (no checks, no
 * sandbox, no descriptors), and `/bare.Bytes/Echo`, which moves raw bytes with no codec at all.
 *
 * With BARE_SERVER_WINDOW_BYTES it receives with that HTTP/2 flow-control window instead of the
 * 64 KiB grpc-js servers are fixed at (grpc-js 1.14 has no server option for it: set here through
 * its private fields, to measure what the fixed window costs an upload; bench only).
 */
const file = join(tmpdir(), `bare-fs-${process.pid}.bin`);
const identity = (b: Buffer) => b;
const server = bareServer(256 * 1024 * 1024);
server.addService(
  { executeTask: EXECUTE_TASK },
  {
    executeTask: async (call: ServerWritableStream<TaskRequest, TaskResponse>) => {
      const args = call.request.arguments;
      let outputs: Record<string, string>;
      if (call.request.toolName === 'fs.write') {
        const bytes = Buffer.from(args.contents!, 'base64');
        await writeFile(file, bytes);
        outputs = { path: args.path!, bytes_written: String(bytes.length) };
      } else {
        const bytes = await readFile(file);
        outputs = { path: args.path!, contents: bytes.toString('base64'), size: String(bytes.length), encoding: 'base64' };
      }
      call.write({ taskId: 'task', payload: { $case: 'result', value: { status: TaskStatus.STATUS_SUCCESS, outputs, error: '', exitCode: 0 } } });
      call.end();
    },
  },
);
server.addService(
  {
    echo: {
      path: '/bare.Bytes/Echo',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  { echo: (call: { request: Buffer }, callback: (err: null, reply: Buffer) => void) => callback(null, call.request) },
);
const window = Number(process.env.BARE_SERVER_WINDOW_BYTES ?? 0);
type GrpcJsPrivates = { commonServerOptions: { settings?: object }; http2Servers: Map<import('node:http2').Http2Server, unknown> };
if (window) (server as unknown as GrpcJsPrivates).commonServerOptions.settings = { initialWindowSize: window };
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  if (window)
    for (const http2 of (server as unknown as GrpcJsPrivates).http2Servers.keys()) http2.on('session', (session) => session.setLocalWindowSize(window));
  process.stdout.write(`${JSON.stringify({ message: 'listening', port })}\n`);
});
