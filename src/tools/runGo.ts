import { runCodeTool } from './runCode.js';

/** Builds Go code (a `package main` file) in the session's module and runs it, streaming its output. */
export const runGo = runCodeTool('run.go', 'go', 'building and starting the Go program');
