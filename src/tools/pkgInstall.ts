import { errors } from '../errors.js';
import type { PackageInstaller } from '../sandbox/languages/language.js';
import { metrics, secondsSince } from '../telemetry/metrics.js';
import { CAPTURED_OUTPUTS, capturedOutputs, streamingRunOptions } from './processOutput.js';
import { defineTool, type ToolContext } from './tool.js';

/** Progress events from the installer's output lines that mark a stage. */
function progressFrom(ctx: ToolContext, installer: PackageInstaller) {
  let reached = 0;
  return async (line: string) => {
    const stage = installer.stages.find(([pattern, percent]) => percent > reached && pattern.test(line));
    if (!stage) return;
    reached = stage[1];
    await ctx.emit({ kind: 'progress', percentComplete: stage[1], stage: stage[2], message: line.trim() });
  };
}

/** Installs packages into the session's environment with its language's installer (pip, npm, go). */
export const pkgInstall = defineTool({
  name: 'pkg.install',
  kind: 'process',
  arguments: { required: ['requirements'] },
  // `installed` on success; on failure what the installer's process left (as a run tool's, no exit_code).
  outputs: ['installed', ...CAPTURED_OUTPUTS],
  parse({ requirements }, session) {
    return session.sandbox.language.installer.parse(requirements);
  },
  async run(requirements, ctx) {
    const installer = ctx.session.sandbox.language.installer;
    await ctx.emit({ kind: 'progress', percentComplete: 0, stage: 'starting', message: `installing ${requirements.join(', ')}` });
    const started = performance.now();
    const result = await ctx.session.sandbox.install(requirements, streamingRunOptions(ctx, installer.name, progressFrom(ctx, installer)), ctx.session.userId);
    metrics.pkgInstallSeconds.observe({ outcome: result.exitCode === 0 ? 'installed' : 'failed' }, secondsSince(started));
    const outputs = capturedOutputs(result);
    if (result.exitCode !== 0) {
      const lines = result.stderr.text.trim().split('\n');
      const reason = lines.filter((l) => installer.errorLine.test(l)).pop() ?? `${installer.name} exited with code ${result.exitCode}`;
      return { ok: false, exitCode: result.exitCode, outputs, error: reason, callError: errors.packageInstallFailed(reason) };
    }
    await ctx.emit({ kind: 'progress', percentComplete: 100, stage: 'completed', message: 'packages installed' });
    return {
      ok: true,
      exitCode: 0,
      outputs: {
        installed: installer.installedNames(requirements, result.installed).join(','),
        stdout: outputs.stdout,
        ...(outputs.stdout_truncated ? { stdout_truncated: 'true' } : {}),
      },
    };
  },
});
