import { metrics, secondsSince } from '../telemetry/metrics.js';
import { checkArguments } from './arguments.js';
import { capturedOutputs, streamingRunOptions } from './processOutput.js';
import { defineTool } from './tool.js';

/** Runs Python code in a fresh interpreter in the session's environment, streaming its output. */
export const runPython = defineTool({
  name: 'run.python',
  kind: 'process',
  parse: (args) => checkArguments('run.python', args, ['code']),
  async run({ code }, ctx) {
    await ctx.emit({ kind: 'progress', percentComplete: 0, stage: 'starting', message: 'starting the Python interpreter' });
    const started = performance.now();
    const options = { ...streamingRunOptions(ctx), onStart: () => metrics.runPythonStartSeconds.observe(secondsSince(started)) };
    const result = await ctx.session.sandbox.runCode(code, options, ctx.constraints);
    const ok = result.exitCode === 0 && result.killedBy === undefined;
    const ending = result.killedBy
      ? `python was stopped by its ${result.killedBy} limit (exit code ${result.exitCode})`
      : `python exited with code ${result.exitCode}`;
    await ctx.emit({ kind: 'progress', percentComplete: 100, stage: 'completed', message: ending });
    return {
      ok,
      exitCode: result.exitCode,
      outputs: { ...capturedOutputs(result), exit_code: String(result.exitCode) },
      ...(ok ? {} : { error: ending }),
    };
  },
});
