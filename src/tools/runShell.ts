import { errors, quoted } from '../errors.js';
import { errnoOf } from '../storage/beneath.js';
import { inWorkspace, workspaceSegments } from '../storage/workspacePath.js';
import { streamingRunOptions } from './processOutput.js';
import { PROCESS_OUTPUTS, processOutcome } from './runCode.js';
import { toFileError } from './fileErrors.js';
import { parseFlag, terminalSize } from './arguments.js';
import { defineTool } from './tool.js';

/** Longest command: it is one argument of an exec (the kernel takes 128 KiB per argument). */
const MAX_COMMAND_BYTES = 64 * 1024;

/**
 * Runs `command` with /bin/sh -c in the workspace (or `cwd`, a directory in it), in every
 * session: the session's language tools on PATH, the same sandbox, limits and outcomes as the
 * run tools. Its exit code is the command's.
 */
export const runShell = defineTool({
  name: 'run.shell',
  kind: 'process',
  arguments: { required: ['command'], optional: ['cwd', 'background', 'pty', 'rows', 'cols'] },
  outputs: [...PROCESS_OUTPUTS, 'process_id', 'pid'],
  parse({ command, cwd, background, pty, rows, cols }) {
    if (command.trim() === '') throw errors.invalidArgument('run.shell command is empty');
    if (command.includes('\0')) throw errors.invalidArgument('run.shell command contains a NUL byte');
    if (Buffer.byteLength(command) > MAX_COMMAND_BYTES)
      throw errors.invalidArgument(`run.shell command is longer than ${MAX_COMMAND_BYTES} bytes; write a script with fs.write`);
    const segments = cwd === undefined || cwd === '' || cwd === '.' ? [] : workspaceSegments(cwd);
    const inBackground = parseFlag('run.shell', 'background', background);
    const onTerminal = parseFlag('run.shell', 'pty', pty);
    if (onTerminal && !inBackground) throw errors.invalidArgument('run.shell pty is for background processes: give background "true" too');
    if (!onTerminal && (rows !== undefined || cols !== undefined))
      throw errors.invalidArgument('run.shell rows and cols are for a terminal: give pty "true" too');
    const terminal = onTerminal ? terminalSize('run.shell', rows, cols) : undefined;
    return { command, cwd: cwd ?? '', segments, background: inBackground, ...(terminal ? { terminal } : {}) };
  },
  async run({ command, cwd, segments, background, terminal }, ctx) {
    if (segments.length > 0) {
      // The directory must be there now (looked up without following links); the sandbox enters it.
      await inWorkspace(ctx.session.sandbox.workspace, (tree) => tree.directory(segments)).catch((err: unknown) => {
        if (errnoOf(err) === 'ENOTDIR') throw errors.invalidArgument(`run.shell cwd ${quoted(cwd, 200)} is not a directory`);
        throw toFileError(cwd, err);
      });
    }
    if (background) {
      if (ctx.constraints.maxMemoryMb > 0 || ctx.constraints.maxCpuPercent > 0)
        throw errors.invalidArgument("run.shell background processes run under the session's limits; a task's constraints do not apply to them");
      await ctx.recorded;
      const started = await ctx.session.sandbox.startBackground(await ctx.session.nextProcessNumber(), command, segments, terminal);
      return { ok: true, exitCode: 0, outputs: { process_id: started.processId, pid: String(started.pid) } };
    }
    await ctx.emit({ kind: 'progress', percentComplete: 0, stage: 'starting', message: 'starting /bin/sh' });
    return processOutcome(ctx, 'the command', await ctx.session.sandbox.runShell(command, segments, streamingRunOptions(ctx), ctx.constraints));
  },
});
