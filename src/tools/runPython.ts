import { checkArguments } from './arguments.js';
import { capturedOutputs, streamingRunOptions } from './processOutput.js';
import { defineTool } from './tool.js';

/** Runs Python code in a fresh interpreter in the session's environment, streaming its output. */
export const runPython = defineTool({
  name: 'run.python',
  parse: (args) => checkArguments('run.python', args, ['code']),
  async run({ code }, ctx) {
    await ctx.emit({ kind: 'progress', percentComplete: 0, stage: 'starting', message: 'starting the Python interpreter' });
    const result = await ctx.session.sandbox.runPython(code, streamingRunOptions(ctx));
    const ok = result.exitCode === 0;
    await ctx.emit({ kind: 'progress', percentComplete: 100, stage: 'completed', message: `python exited with code ${result.exitCode}` });
    return {
      ok,
      exitCode: result.exitCode,
      outputs: { ...capturedOutputs(result), exit_code: String(result.exitCode) },
      ...(ok ? {} : { error: `python exited with code ${result.exitCode}` }),
    };
  },
});
