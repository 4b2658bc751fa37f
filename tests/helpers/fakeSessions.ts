import winston from 'winston';
import { SessionState } from '../../gen/codegen/v1/common.js';
import { errors } from '../../src/errors.js';
import { PIP_INSTALLER } from '../../src/sandbox/languages/python/requirements.js';
import { PayloadBudget } from '../../src/sessions/payloadBudget.js';
import { Session, type SessionSandboxParts } from '../../src/sessions/session.js';
import { TreeMemory } from '../../src/sessions/treeMemory.js';
import type { WorkspaceStore } from '../../src/storage/workspaceStore.js';
import { TaskRegistry } from '../../src/sessions/taskRegistry.js';
import { WriteGate } from '../../src/sessions/writeGate.js';
import type { TaskSession, TaskSessions } from '../../src/tasks/taskSessions.js';
import type { ToolSandbox } from '../../src/tools/tool.js';

// Stand-ins for unit tests of tasks and tools: a python session whose sandbox starts nothing
// (each process call fails unless the test gives it), typed as the consumers' own interfaces
// (tools/tool.ts's ToolSandbox, tasks/taskSessions.ts's TaskSession), so no cast hides a
// member the code starts to use.

const unset = (what: string) => () => Promise.reject(new Error(`the fake sandbox was not given ${what}`));

/** What a Session itself uses of a sandbox, doing nothing: for tests of a session's own bookkeeping. */
export const idleSessionSandbox: SessionSandboxParts = {
  owner: undefined,
  diskUid: undefined,
  diskMb: 0,
  diskBaselineBytes: 0,
  usage: async () => ({ memoryBytes: 0, cpuPercent: 0 }),
  diskUsedBytes: async () => 0,
  dispose: async () => undefined,
};

/** A python session (CREATING, no limits, silent) keeping its record and journal in `store`. */
export function bookkeepingSession(store: WorkspaceStore): Session<SessionSandboxParts> {
  return new Session<SessionSandboxParts>({
    id: 'session-t',
    workspaceId: 'w',
    userId: 'u',
    config: {
      language: 'python',
      limits: { maxMemoryMb: 0, maxCpuPercent: 0, maxDiskMb: 0, timeoutSeconds: 0 },
      env: {},
      network: { mode: 'none', allow: [] },
    },
    logger: winston.createLogger({ silent: true }),
    treeMemory: new TreeMemory(),
    taskHistory: 10,
    store,
  });
}

/** A python session's sandbox starting no process: `over` gives what a test needs. */
export function fakeSandbox(over: Partial<ToolSandbox> = {}): ToolSandbox {
  return {
    workspace: '/fake/workspace',
    scratch: '/fake/scratch',
    owner: undefined,
    language: { installer: PIP_INSTALLER },
    runCode: unset('runCode'),
    runShell: unset('runShell'),
    install: unset('install'),
    startBackground: unset('startBackground'),
    canConnectPorts: () => {
      throw new Error('the fake sandbox was not given ports');
    },
    get background(): ToolSandbox['background'] {
      throw new Error('the fake sandbox was not given background processes');
    },
    ...over,
  };
}

/** A ready python session with a real task registry, a silent logger and the fake sandbox. */
export function fakeTaskSession(over: Partial<TaskSession> = {}): TaskSession {
  return {
    id: 'session-1',
    userId: 'user-1',
    state: SessionState.SESSION_STATE_READY,
    config: { language: 'python', limits: { timeoutSeconds: 0 } },
    tasks: new TaskRegistry('session-1', 10),
    payloads: new PayloadBudget(1 << 30),
    writes: new WriteGate(),
    touch: () => undefined,
    recordTask: () => Promise.resolve(),
    recordOutcome: () => undefined,
    nextProcessNumber: (() => {
      let number = 0;
      return () => Promise.resolve(++number);
    })(),
    logger: { isDebugEnabled: () => false, isLevelEnabled: () => false, debug: () => undefined, log: () => undefined, error: () => undefined },
    sandbox: fakeSandbox(),
    ...over,
  };
}

/** A pool of the given sessions (NOT_FOUND for any other id). */
export function fakeTaskSessions(sessions: TaskSession[], accepting = true): TaskSessions {
  return {
    isAccepting: accepting,
    get: (id) => {
      const session = sessions.find((s) => s.id === id);
      if (!session) throw errors.sessionNotFound(id);
      return session;
    },
  };
}
