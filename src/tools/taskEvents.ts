import type { LogLevel, TaskStatus } from '../../gen/codegen/v1/common.js';

/** What a running task reports, in the order the client receives it. */
export type TaskEvent =
  | { kind: 'progress'; percentComplete: number; stage: string; message: string }
  | { kind: 'log'; timestampMs: number; level: LogLevel; message: string; source: string }
  | { kind: 'result'; status: TaskStatus; outputs: Record<string, string>; error: string; exitCode: number };
