import { errors } from '../errors.js';
import { metrics, secondsSince } from '../telemetry/metrics.js';
import { canonicalName, parseRequirements } from '../sandbox/python/requirements.js';
import { checkArguments } from './arguments.js';
import { capturedOutputs, streamingRunOptions } from './processOutput.js';
import { defineTool, type ToolContext } from './tool.js';

/** pip's output lines that mark a stage of the install, and how far along it is. */
const STAGES: [RegExp, number, string][] = [
  [/^Collecting /, 10, 'resolving'],
  [/^\s*Downloading /, 40, 'downloading'],
  [/^Installing collected packages/, 70, 'installing'],
  [/^Successfully installed/, 95, 'installed'],
];

function progressFrom(ctx: ToolContext) {
  let reached = 0;
  return async (line: string) => {
    const stage = STAGES.find(([pattern, percent]) => percent > reached && pattern.test(line));
    if (!stage) return;
    reached = stage[1];
    await ctx.emit({ kind: 'progress', percentComplete: stage[1], stage: stage[2], message: line.trim() });
  };
}

/** Installs packages into the session's environment from the worker's package index. */
export const pkgInstall = defineTool({
  name: 'pkg.install',
  kind: 'process',
  parse(args) {
    const { requirements } = checkArguments('pkg.install', args, ['requirements']);
    return parseRequirements(requirements);
  },
  async run(requirements, ctx) {
    await ctx.emit({ kind: 'progress', percentComplete: 0, stage: 'starting', message: `installing ${requirements.join(', ')}` });
    const started = performance.now();
    const result = await ctx.session.sandbox.install(requirements, streamingRunOptions(ctx, 'pip', progressFrom(ctx)));
    metrics.pkgInstallSeconds.observe({ outcome: result.exitCode === 0 ? 'installed' : 'failed' }, secondsSince(started));
    const outputs = capturedOutputs(result);
    if (result.exitCode !== 0) {
      const reason =
        result.stderr.text
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('ERROR'))
          .pop() ?? `pip exited with code ${result.exitCode}`;
      return { ok: false, exitCode: result.exitCode, outputs, error: reason, callError: errors.packageInstallFailed(reason) };
    }

    // Named by what each requirement resolved to: pip's report for what it installed now,
    // the requirement's own name for what was already there.
    const requestedNow = (result.installed ?? []).filter((item) => item.requested).map((item) => item.name);
    const seen = new Set(requestedNow.map(canonicalName));
    const alreadyThere = requirements
      .map((req) => /^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(req)?.[0])
      .filter((name): name is string => name !== undefined && !seen.has(canonicalName(name)));
    await ctx.emit({ kind: 'progress', percentComplete: 100, stage: 'completed', message: 'packages installed' });
    return {
      ok: true,
      exitCode: 0,
      outputs: {
        installed: [...requestedNow, ...alreadyThere].join(','),
        stdout: outputs.stdout,
        ...(outputs.stdout_truncated ? { stdout_truncated: 'true' } : {}),
      },
    };
  },
});
