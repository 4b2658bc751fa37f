import { LogLevel } from '../../gen/codegen/v1/common.js';
import type { RunOptions } from '../sandbox/process/processSpec.js';
import type { SandboxedResult } from '../sandbox/process/processSpec.js';
import type { ToolContext } from './tool.js';

/**
 * Run options that stream output to the client as LogEntries (each several consecutive lines of
 * one stream, see RunOptions.onOutput), labelled with `source` (or stdout/stderr), and pass
 * every line to `observe` too.
 */
export function streamingRunOptions(ctx: ToolContext, source?: string, observe?: (line: string) => Promise<void> | void): RunOptions {
  return {
    signal: ctx.signal,
    phases: ctx.phases,
    recorded: ctx.recorded,
    maxCaptureBytes: ctx.limits.maxOutputBytes,
    pacedReads: ctx.othersBusy,
    onOutput: async (stream, text) => {
      await ctx.emit({
        kind: 'log',
        timestampMs: Date.now(),
        level: stream === 'stderr' ? LogLevel.LOG_LEVEL_ERROR : LogLevel.LOG_LEVEL_INFO,
        message: text,
        source: source ?? stream,
      });
      if (observe) for (const line of text.split('\n')) await observe(line);
    },
  };
}

/** The outputs a process's capture gives a result: its streams, their truncation flags, the limit that ended it. */
export const CAPTURED_OUTPUTS = ['stdout', 'stderr', 'stdout_truncated', 'stderr_truncated', 'killed_by'] as const;

/** stdout, stderr, their truncation flags (only when capped) and the limit that ended the process, as result outputs. */
export function capturedOutputs(result: SandboxedResult): Partial<Record<(typeof CAPTURED_OUTPUTS)[number], string>> & { stdout: string; stderr: string } {
  const outputs: ReturnType<typeof capturedOutputs> = { stdout: result.stdout.text, stderr: result.stderr.text };
  if (result.stdout.truncated) outputs.stdout_truncated = 'true';
  if (result.stderr.truncated) outputs.stderr_truncated = 'true';
  if (result.killedBy) outputs.killed_by = result.killedBy;
  return outputs;
}
