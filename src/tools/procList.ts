import { defineTool } from './tool.js';

/** The session's background processes (run.shell background), running and lately exited. */
export const procList = defineTool({
  name: 'proc.list',
  kind: 'instant',
  arguments: { required: [] },
  outputs: ['processes_json'],
  parse: () => ({}),
  run: async (_args, { session }) => {
    const processes = session.sandbox.background.list().map((p) => ({
      process_id: p.processId,
      command: p.command,
      pid: p.pid,
      started_at_ms: p.startedAtMs,
      running: p.running,
      exit_code: p.exitCode ?? null,
      killed_by: p.killedBy ?? null,
      pty: p.pty,
    }));
    return { ok: true, exitCode: 0, outputs: { processes_json: JSON.stringify(processes) } };
  },
});
