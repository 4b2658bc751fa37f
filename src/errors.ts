import { ServerError, Status } from 'nice-grpc';

/**
 * A failure the client should see, carrying its gRPC status code and a message a person can act
 * on. It is nice-grpc's ServerError, so a call ends with exactly this status wherever it is
 * thrown; anything else thrown is mapped to INTERNAL in one place (grpc/mapErrors.ts).
 */
export class WorkerError extends ServerError {
  constructor(code: Status, message: string) {
    super(code, message);
    this.name = 'WorkerError';
  }
}

/** Client input for a message: JSON-quoted, cut to `max` characters with an ellipsis. */
export function quoted(value: string, max = 64): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/** Every client-visible failure, named once, with the code the reference's tables give it. */
export const errors = {
  // Session errors
  sessionNotFound: (sessionId: string) =>
    new WorkerError(Status.NOT_FOUND, `session not found: '${sessionId}' does not exist on this worker (destroyed, expired or never created)`),
  capacityExceeded: (max: number) =>
    new WorkerError(Status.RESOURCE_EXHAUSTED, `capacity exceeded: this worker already runs its maximum of ${max} sessions; destroy one or use another worker`),
  invalidSessionState: (sessionId: string, state: string, operation: string) =>
    new WorkerError(Status.FAILED_PRECONDITION, `invalid session state: cannot ${operation} while session '${sessionId}' is ${state}`),
  initializationFailed: (detail: string) =>
    new WorkerError(Status.INTERNAL, `session initialization failed: ${detail}`),

  // Task errors
  taskNotFound: (taskId: string, sessionId: string) =>
    new WorkerError(Status.NOT_FOUND, `task not found: no task '${taskId}' in session '${sessionId}' (unknown, or dropped from the bounded task history)`),
  taskTimeout: (seconds: number) =>
    new WorkerError(Status.DEADLINE_EXCEEDED, `task timeout: the task exceeded its ${seconds} s timeout and was stopped`),
  taskCancelled: (why: string) => new WorkerError(Status.CANCELLED, `task cancelled: ${why}`),
  taskAlreadyRunning: (taskId: string, sessionId: string) =>
    new WorkerError(Status.ALREADY_EXISTS, `task '${taskId}' is already running in session '${sessionId}'; use another task_id`),
  invalidArgument: (message: string) => new WorkerError(Status.INVALID_ARGUMENT, `invalid argument: ${message}`),

  // Tool errors
  invalidPath: (path: string, why: string) =>
    new WorkerError(Status.INVALID_ARGUMENT, `invalid path ${JSON.stringify(path)}: ${why}`),
  fileNotFound: (path: string) => new WorkerError(Status.NOT_FOUND, `file not found: ${JSON.stringify(path)} does not exist in the workspace`),
  permissionDenied: (path: string, why: string) =>
    new WorkerError(Status.PERMISSION_DENIED, `permission denied for ${JSON.stringify(path)}: ${why}`),
  pythonNotFound: (detail: string) =>
    new WorkerError(Status.FAILED_PRECONDITION, `python not found: ${detail}`),
  packageInstallFailed: (detail: string) => new WorkerError(Status.INTERNAL, `package install failed: ${detail}`),
  tooLarge: (what: string) => new WorkerError(Status.RESOURCE_EXHAUSTED, what),

  // Checkpoint errors
  checkpointNotFound: (checkpointId: string) => new WorkerError(Status.NOT_FOUND, `checkpoint not found: '${checkpointId}' does not exist in the checkpoint store (never made, or removed by retention)`),
  archiveFailed: (detail: string) => new WorkerError(Status.INTERNAL, `archive failed: ${detail}`),
  checkpointCorrupted: (checkpointId: string) => new WorkerError(Status.INTERNAL, `checkpoint corrupted: the archive of ${checkpointId} does not match its checksum; nothing was restored`),

  // Worker-wide
  shuttingDown: () => new WorkerError(Status.UNAVAILABLE, 'worker is shutting down; retry on another worker'),
  internal: (detail: string) => new WorkerError(Status.INTERNAL, `internal error: ${detail}`),
} as const;
