/** The typed client for coordinators and tools: `import { createWorkerClient, runTask } from 'codegen-mcp-worker'`. */
export { createWorkerClient, type WorkerCallOptions, type WorkerClient, type WorkerClientOptions } from './createWorkerClient.js';
export { runTask, type RunTaskOptions } from './runTask.js';
export { LogLevel, SessionState, TaskStatus } from '../../gen/codegen/v1/common.js';
export type { LogEntry, ProgressUpdate, TaskRequest, TaskResult } from '../../gen/codegen/v1/task_execution.js';
