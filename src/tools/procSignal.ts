import { errors } from '../errors.js';
import { BackgroundProcesses } from '../sandbox/session/backgroundProcesses.js';
import { defineTool } from './tool.js';

/** Sends a signal (TERM, INT, KILL, HUP, …) to a background process and what it started. */
export const procSignal = defineTool({
  name: 'proc.signal',
  kind: 'instant',
  arguments: { required: ['process_id', 'signal'] },
  outputs: ['signal'],
  parse({ process_id, signal }) {
    const name = signal.toUpperCase().replace(/^SIG/, '');
    if (!BackgroundProcesses.signals.has(name))
      throw errors.invalidArgument(`proc.signal signal must be one of ${[...BackgroundProcesses.signals].join(', ')}, got '${signal.slice(0, 20)}'`);
    return { processId: process_id, signal: name };
  },
  run: async ({ processId, signal }, { session }) => {
    session.sandbox.background.signal(processId, signal);
    return { ok: true, exitCode: 0, outputs: { signal } };
  },
});
