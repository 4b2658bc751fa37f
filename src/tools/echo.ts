import { checkArguments } from './arguments.js';
import { defineTool } from './tool.js';

/** Test tool for connectivity: returns its message. */
export const echo = defineTool({
  name: 'echo',
  kind: 'instant',
  parse: (args) => checkArguments('echo', args, ['message']),
  run: async ({ message }) => ({ ok: true, exitCode: 0, outputs: { message } }),
});
