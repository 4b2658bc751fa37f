import { ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { TaskStatus } from '../gen/codegen/v1/common.js';
import type { TaskRequest, TaskResponse } from '../gen/codegen/v1/task_execution.js';
import { bareServer, EXECUTE_TASK } from './bareServer.js';

/**
 * The echo baseline: a bare @grpc/grpc-js server answering ExecuteTask's path with one result
 * message, with the worker's server options, in its own process like the worker.
 */
const server = bareServer();
server.addService(
  { executeTask: EXECUTE_TASK },
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
