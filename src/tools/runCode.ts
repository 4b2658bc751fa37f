import type { SandboxedResult } from '../sandbox/process/processSpec.js';
import { CAPTURED_OUTPUTS, capturedOutputs, streamingRunOptions } from './processOutput.js';
import { defineTool, type Tool, type ToolContext, type ToolOutcome } from './tool.js';

/** What processOutcome() gives a result: the process's capture and its exit code. */
export const PROCESS_OUTPUTS = [...CAPTURED_OUTPUTS, 'exit_code'] as const;

/** A process tool's outcome from its process: ok when it exited 0 and no limit stopped it. */
export async function processOutcome(ctx: Pick<ToolContext, 'emit'>, what: string, result: SandboxedResult): Promise<ToolOutcome> {
  const ok = result.exitCode === 0 && result.killedBy === undefined;
  const ending = result.killedBy
    ? `${what} was stopped by its ${result.killedBy} limit (exit code ${result.exitCode})`
    : `${what} exited with code ${result.exitCode}`;
  await ctx.emit({ kind: 'progress', percentComplete: 100, stage: 'completed', message: ending });
  return {
    ok,
    exitCode: result.exitCode,
    outputs: { ...capturedOutputs(result), exit_code: String(result.exitCode) },
    ...(ok ? {} : { error: ending }),
  };
}

/**
 * run.<language>: `code` run by a fresh process of the session's language in its environment
 * (cwd = workspace), output streamed. `what` names the program in messages ("python").
 */
export function runCodeTool(name: string, what: string, starting: string, onStarted?: (startedAt: number) => void): Tool {
  return defineTool({
    name,
    kind: 'process',
    arguments: { required: ['code'] },
    outputs: PROCESS_OUTPUTS,
    // The arguments themselves: large code stays the request's bytes until run() reads it.
    parse: (args) => args,
    async run({ code }, ctx) {
      await ctx.emit({ kind: 'progress', percentComplete: 0, stage: 'starting', message: starting });
      const started = performance.now();
      const options = { ...streamingRunOptions(ctx), onStart: () => onStarted?.(started) };
      return processOutcome(ctx, what, await ctx.session.sandbox.runCode(code, options, ctx.constraints));
    },
  });
}
