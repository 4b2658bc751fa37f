import { SessionState } from '../../gen/codegen/v1/common.js';
import { errors, quoted } from '../errors.js';
import { smallestPositive } from '../limits.js';
import { stateName } from '../sessions/session.js';
import { nonNegative } from '../sessions/sessionConfig.js';
import type { TaskSession, TaskSessions } from './taskSessions.js';
import { languagesOfTool, toolsFor } from '../tools/index.js';
import type { Tool } from '../tools/tool.js';

export interface TaskInput {
  taskId: string;
  sessionId: string;
  toolName: string;
  arguments: Record<string, string>;
  constraints?: { timeoutSeconds: number; maxMemoryMb: number; maxCpuPercent: number } | undefined;
}

/** A request checked and resolved: everything a task needs before it is registered. */
export interface PreparedTask {
  taskId: string;
  session: TaskSession;
  tool: Tool;
  args: unknown;
  /** The smallest positive of the task's, the session's and the worker's timeouts. */
  timeoutSeconds: number;
  /** The task's narrowing of the session's limits (0: the session's). */
  constraints: { maxMemoryMb: number; maxCpuPercent: number };
}

/** The tool `name` of the session's language; INVALID_ARGUMENT naming the session's tools when it has none. */
function toolOf(session: TaskSession, name: string): Tool {
  const tools = toolsFor(session.config.language);
  const tool = tools.get(name);
  if (tool) return tool;
  const offers = `this ${session.config.language} session offers ${[...tools.keys()].join(', ')}`;
  const elsewhere = languagesOfTool(name);
  if (elsewhere.length > 0) throw errors.invalidArgument(`tool ${quoted(name)} is for ${elsewhere.join(' and ')} sessions; ${offers}`);
  throw errors.invalidArgument(`unknown tool ${quoted(name)}; ${offers}`);
}

const RUNNABLE_STATES = new Set([SessionState.SESSION_STATE_READY, SessionState.SESSION_STATE_ACTIVE]);

/** Checks a task request against the worker, the session and the tool; throws the request's error. */
export function prepareTask(pool: TaskSessions, maxTimeoutSeconds: number, input: TaskInput): PreparedTask {
  const session = pool.get(input.sessionId);
  if (!pool.isAccepting) throw errors.shuttingDown();
  if (!RUNNABLE_STATES.has(session.state)) throw errors.invalidSessionState(session.id, stateName(session.state), 'run a task');
  const tool = toolOf(session, input.toolName);
  const asked = input.constraints;
  const timeoutSeconds = smallestPositive(
    nonNegative('constraints.timeout_seconds', asked?.timeoutSeconds ?? 0),
    session.config.limits.timeoutSeconds,
    maxTimeoutSeconds,
  );
  const constraints = {
    maxMemoryMb: nonNegative('constraints.max_memory_mb', asked?.maxMemoryMb ?? 0),
    maxCpuPercent: nonNegative('constraints.max_cpu_percent', asked?.maxCpuPercent ?? 0),
  };
  const args = tool.parse(input.arguments, session);
  // The worker's own maximum is positive (config checks it), so a timeout is always found.
  return { taskId: input.taskId, session, tool, args, timeoutSeconds: timeoutSeconds!, constraints };
}
