import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import { TaskRequest, TaskResponse } from '../gen/codegen/v1/task_execution.js';

/**
 * The echo baseline: a bare @grpc/grpc-js server answering ExecuteTask's path with one result
 * message, with the worker's server options, in its own process like the worker.
 */
const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024, 'grpc.enable_channelz': 0 });
server.addService(
  {
    executeTask: {
      path: '/codegen.v1.TaskExecution/ExecuteTask',
      requestStream: false,
      responseStream: true,
      requestSerialize: (m: TaskRequest) => Buffer.from(TaskRequest.encode(m).finish()),
      requestDeserialize: (b: Buffer) => TaskRequest.decode(b),
      responseSerialize: (m: TaskResponse) => Buffer.from(TaskResponse.encode(m).finish()),
      responseDeserialize: (b: Buffer) => TaskResponse.decode(b),
    },
  },
  {
    executeTask: (call: ServerWritableStream<TaskRequest, TaskResponse>) => {
      const taskId = call.request.taskId || 'task';
      call.write({
        taskId,
        payload: {
          $case: 'result',
          value: { status: TaskStatus.STATUS_SUCCESS, outputs: { message: call.request.arguments.message ?? '' }, error: '', exitCode: 0 },
        },
      });
      call.end();
    },
  },
);
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ message: 'listening', port })}\n`);
});
