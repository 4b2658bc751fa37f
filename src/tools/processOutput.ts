import { LogLevel } from '../../gen/codegen/v1/common.js';
import type { RunOptions } from '../sandbox/processSpec.js';
import type { SandboxedResult } from '../sandbox/processSpec.js';
import type { ToolContext } from './tool.js';

/**
 * Run options that stream each output line to the client as a LogEntry, labelled with
 * `source` (or stdout/stderr), and pass every line to `observe` too.
 */
export function streamingRunOptions(ctx: ToolContext, source?: string, observe?: (line: string) => Promise<void> | void): RunOptions {
  return {
    signal: ctx.signal,
    phases: ctx.phases,
    recorded: ctx.recorded,
    maxCaptureBytes: ctx.limits.maxOutputBytes,
    onLine: async (stream, line) => {
      await ctx.emit({
        kind: 'log',
        timestampMs: Date.now(),
        level: stream === 'stderr' ? LogLevel.LOG_LEVEL_ERROR : LogLevel.LOG_LEVEL_INFO,
        message: line,
        source: source ?? stream,
      });
      await observe?.(line);
    },
  };
}

/** stdout, stderr, their truncation flags and the limit that ended the process, as result outputs. */
export function capturedOutputs(result: SandboxedResult): Record<string, string> {
  const outputs: Record<string, string> = { stdout: result.stdout.text, stderr: result.stderr.text };
  if (result.stdout.truncated) outputs.stdout_truncated = 'true';
  if (result.stderr.truncated) outputs.stderr_truncated = 'true';
  if (result.killedBy) outputs.killed_by = result.killedBy;
  return outputs;
}
