import { LogLevel, NetworkMode, SessionState, TaskStatus } from '../../gen/codegen/v1/common.js';

/**
 * The enum of each enum-typed field of the API's messages, by the field's name (SessionState:
 * `state` of CreateSessionResponse, SessionStatusResponse, RestoreResponse, SessionInfo;
 * TaskStatus: `status` of TaskResult and StatusResponse; LogLevel: `level` of LogEntry).
 * tests/unit/enumNames.test.ts checks this against the protos' descriptors.
 */
export const ENUM_FIELDS: Readonly<Record<string, Record<number, string>>> = {
  state: SessionState,
  status: TaskStatus,
  level: LogLevel,
  mode: NetworkMode,
};

/** A JSON.stringify replacer writing enum fields by name ("SESSION_STATE_READY"), not number. */
export function enumNames(key: string, value: unknown): unknown {
  const names = typeof value === 'number' && Object.hasOwn(ENUM_FIELDS, key) ? ENUM_FIELDS[key] : undefined;
  return names?.[value as number] ?? value;
}
