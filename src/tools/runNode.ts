import { runCodeTool } from './runCode.js';

/** Runs JavaScript with the worker's Node (`node -`) in the session's environment, streaming its output. */
export const runNode = runCodeTool('run.node', 'node', 'starting Node');
