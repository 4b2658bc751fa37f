/** The typed client for coordinators and tools: `import { createWorkerClient, runTask } from 'codegen-mcp-worker-client'`. */
export { createWorkerClient, type WorkerCallOptions, type WorkerClient, type WorkerClientOptions } from './createWorkerClient.js';
export { BackgroundProcess, Processes, type OutputHandlers, type OutputRead, type ProcessExit, type ProcessInfo, type StartOptions } from './processes.js';
export {
  CodegenWorker,
  Session,
  SessionFiles,
  type CommandOptions,
  type Execution,
  type CopyOptions,
  type FileEntry,
  type Install,
  type KilledBy,
  type RunOptions,
  type SessionOptions,
} from './session.js';
export { runTask, type RunTaskOptions, type RunTaskResult, type TaskEnd } from './runTask.js';
export { LogLevel, SessionState, TaskStatus } from '../../gen/codegen/v1/common.js';
export type { LogEntry, ProgressUpdate, TaskRequest, TaskResult } from '../../gen/codegen/v1/task_execution.js';
/** grpc-js's credentials class, from the copy this client uses: `ChannelCredentials.createSsl(ca, key, cert)` for `credentials`. */
export { ChannelCredentials, ClientError, Status } from 'nice-grpc';
