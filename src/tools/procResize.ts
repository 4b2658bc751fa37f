import { terminalSize } from './arguments.js';
import { defineTool } from './tool.js';

/** Resizes the terminal of a background process started with pty (it gets SIGWINCH). */
export const procResize = defineTool({
  name: 'proc.resize',
  kind: 'instant',
  arguments: { required: ['process_id', 'rows', 'cols'] },
  outputs: ['rows', 'cols'],
  parse: ({ process_id, rows, cols }) => ({ processId: process_id, ...terminalSize('proc.resize', rows, cols) }),
  run: async ({ processId, rows, cols }, { session }) => {
    session.sandbox.background.resize(processId, rows, cols);
    return { ok: true, exitCode: 0, outputs: { rows: String(rows), cols: String(cols) } };
  },
});
