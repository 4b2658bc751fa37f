import { spawn } from 'node:child_process';
import { Server } from '@grpc/grpc-js';
import { TaskRequest, TaskResponse } from '../gen/codegen/v1/task_execution.js';

/** A bare @grpc/grpc-js server with the worker's server options (messages up to `maxMessageBytes`), for baselines. */
export function bareServer(maxMessageBytes = 64 * 1024 * 1024): Server {
  return new Server({ 'grpc.max_receive_message_length': maxMessageBytes, 'grpc.max_send_message_length': maxMessageBytes, 'grpc.enable_channelz': 0 });
}

/** ExecuteTask's path and the generated codec, as the worker serves it, for a bare server's handler. */
export const EXECUTE_TASK = {
  path: '/codegen.v1.TaskExecution/ExecuteTask',
  requestStream: false,
  responseStream: true,
  requestSerialize: (m: TaskRequest) => Buffer.from(TaskRequest.encode(m).finish()),
  requestDeserialize: (b: Buffer) => TaskRequest.decode(b),
  responseSerialize: (m: TaskResponse) => Buffer.from(TaskResponse.encode(m).finish()),
  responseDeserialize: (b: Buffer) => TaskResponse.decode(b),
} as const;

/** Starts one of the bare servers (a script beside this one) in its own process, like the worker; resolves with the port it printed. */
export async function spawnBareServer(
  script: 'bareEchoServer.js' | 'bareFsServer.js',
  env: Record<string, string> = {},
): Promise<{ port: number; stop: () => void }> {
  const child = spawn(process.execPath, [new URL(`./${script}`, import.meta.url).pathname], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port)));
  return { port, stop: () => child.kill('SIGKILL') };
}
