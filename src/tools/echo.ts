import { defineTool } from './tool.js';

/** Test tool for connectivity: returns its message. */
export const echo = defineTool({
  name: 'echo',
  kind: 'instant',
  arguments: { required: ['message'] },
  outputs: ['message'],
  // The arguments themselves: a large message stays the request's bytes until run() reads it.
  parse: (args) => args,
  run: async ({ message }) => ({ ok: true, exitCode: 0, outputs: { message } }),
});
