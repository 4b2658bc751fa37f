import { metrics, secondsSince } from '../telemetry/metrics.js';
import { runCodeTool } from './runCode.js';

/** Runs Python code in a fresh interpreter in the session's environment, streaming its output. */
export const runPython = runCodeTool('run.python', 'python', 'starting the Python interpreter', (started) =>
  metrics.runPythonStartSeconds.observe(secondsSince(started)),
);
