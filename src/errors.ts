import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc';

/**
 * A failure the client should see, carrying its gRPC status code and a message a person can act
 * on. It is nice-grpc's ServerError, so a call ends with exactly this status wherever it is
 * thrown. Every one a client can see is made by the `errors` catalogue below; anything else
 * thrown becomes `errors.internal` (asCallError below).
 */
export class WorkerError extends ServerError {
  constructor(code: Status, message: string) {
    super(code, capMessage(message));
    this.name = 'WorkerError';
  }
}

/** Longest status message, in bytes: a default client refuses larger trailers. */
export const MAX_MESSAGE_BYTES = 1024;

function capMessage(message: string): string {
  if (Buffer.byteLength(message, 'utf8') <= MAX_MESSAGE_BYTES) return message;
  let cut = message.slice(0, MAX_MESSAGE_BYTES - 3);
  while (Buffer.byteLength(cut, 'utf8') > MAX_MESSAGE_BYTES - 3) cut = cut.slice(0, -1);
  // The cut is in UTF-16 code units: never keep the first half of a surrogate pair.
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/**
 * What a client may learn of an unexpected failure: its errno code and system call (ENOSPC,
 * open), never its message (which carries host paths). The log keeps the whole error.
 */
export function faultOf(err: unknown): string {
  const { code, syscall } = (err ?? {}) as NodeJS.ErrnoException;
  if (typeof code === 'string') return syscall ? `${code} in ${syscall}` : code;
  return (err as Error | undefined)?.name ?? 'an unexpected error';
}

/**
 * Any thrown value for the log: an Error's stack, a string as it is, anything else inspected
 * (a thrown undefined or null has no properties to read, and String() fails on some objects).
 */
export function describeThrown(err: unknown): string {
  const stack = (err as { stack?: unknown } | null | undefined)?.stack;
  if (typeof stack === 'string') return stack;
  return typeof err === 'string' ? err : inspect(err);
}

/** The message of anything thrown (a throw need not be an Error: `Promise.reject()` rejects with undefined). */
export function messageOf(err: unknown): string {
  const message = (err as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : typeof err === 'string' ? err : inspect(err);
}

/** Client input for a message: JSON-quoted, cut to `max` characters with an ellipsis. */
export function quoted(value: string, max = 64): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/** Every client-visible failure, named once, with the code the reference's tables give it. */
export const errors = {
  // Session errors
  sessionNotFound: (sessionId: string) =>
    new WorkerError(Status.NOT_FOUND, `session not found: ${quoted(sessionId)} does not exist on this worker (destroyed, expired or never created)`),
  capacityExceeded: (max: number) =>
    new WorkerError(Status.RESOURCE_EXHAUSTED, `capacity exceeded: this worker already runs its maximum of ${max} sessions; destroy one or use another worker`),
  invalidSessionState: (sessionId: string, state: string, operation: string) =>
    new WorkerError(Status.FAILED_PRECONDITION, `invalid session state: cannot ${operation} while session ${quoted(sessionId)} is ${state}`),
  initializationFailed: (detail: string) => new WorkerError(Status.INTERNAL, `session initialization failed: ${detail}`),
  forkUnavailable: (sessionId: string, why: string) => new WorkerError(Status.FAILED_PRECONDITION, `cannot fork session ${quoted(sessionId)}: ${why}`),
  forksPastCapacity: (count: number, free: number, max: number) =>
    new WorkerError(
      Status.RESOURCE_EXHAUSTED,
      `capacity exceeded: ${count} forks asked for, room for ${free} more session${free === 1 ? '' : 's'} (this worker runs at most ${max}); ask for fewer or destroy sessions`,
    ),

  // Task errors
  taskNotFound: (taskId: string, sessionId: string) =>
    new WorkerError(
      Status.NOT_FOUND,
      `task not found: no task ${quoted(taskId)} in session ${quoted(sessionId)} (unknown, or dropped from the bounded task history)`,
    ),
  taskTimeout: (seconds: number) => new WorkerError(Status.DEADLINE_EXCEEDED, `task timeout: the task exceeded its ${seconds} s timeout and was stopped`),
  taskCancelled: (why: string) => new WorkerError(Status.CANCELLED, `task cancelled: ${why}`),
  taskAlreadyRunning: (taskId: string, sessionId: string) =>
    new WorkerError(Status.ALREADY_EXISTS, `task ${quoted(taskId)} is already running in session ${quoted(sessionId)}; use another task_id`),
  invalidArgument: (message: string) => new WorkerError(Status.INVALID_ARGUMENT, `invalid argument: ${message}`),

  // Tool errors
  invalidPath: (path: string, why: string) => new WorkerError(Status.INVALID_ARGUMENT, `invalid path ${quoted(path, 200)}: ${why}`),
  fileNotFound: (path: string) => new WorkerError(Status.NOT_FOUND, `file not found: ${quoted(path, 200)} does not exist in the workspace`),
  permissionDenied: (path: string, why: string) => new WorkerError(Status.PERMISSION_DENIED, `permission denied for ${quoted(path, 200)}: ${why}`),
  /** EROFS: the filesystem itself refuses writes (ext4 remounts itself read-only after I/O errors), whoever asks. */
  readOnlyDisk: (what: string) =>
    new WorkerError(
      Status.FAILED_PRECONDITION,
      `the session's disk is read-only (the kernel remounted it after write errors); ${what} cannot be written. What is there still reads: checkpoint the session and restore it into a new one`,
    ),
  pythonNotFound: (detail: string) => new WorkerError(Status.FAILED_PRECONDITION, `python not found: ${detail}`),
  sourceUnreachable: (url: string, why: string, setting: string) =>
    new WorkerError(
      Status.UNAVAILABLE,
      `pkg.install cannot reach the package source ${url}: ${why}; ${setting} names it (is it up, and reachable from this worker?)`,
    ),
  environmentBroken: (language: string, detail: string) => new WorkerError(Status.FAILED_PRECONDITION, `${language} environment broken: ${detail}`),
  packageInstallFailed: (detail: string) => new WorkerError(Status.INTERNAL, `package install failed: ${detail}`),
  tooLarge: (what: string) => new WorkerError(Status.RESOURCE_EXHAUSTED, what),
  /** The package caches' disk could not hold this install even once emptied: this session's failure alone. */
  cachesFull: (limitMb: number) =>
    new WorkerError(
      Status.RESOURCE_EXHAUSTED,
      `pkg.install: the package caches are full: this install needs more than their disk holds (WORKER_CACHE_DISK_MB ${limitMb} MB), even emptied first; install fewer or smaller packages at once`,
    ),

  // Network policy errors (docs/api.md "Network")
  networkPastCeiling: (mode: string, max: string) =>
    new WorkerError(
      Status.PERMISSION_DENIED,
      `network mode ${mode.toUpperCase()} is past this worker's ceiling WORKER_NETWORK_MAX=${max}: ask for ${max.toUpperCase()} or less`,
    ),
  networkUnavailable: (mode: string, why: string) =>
    new WorkerError(Status.FAILED_PRECONDITION, `network mode ${mode.toUpperCase()} is not available on this worker: ${why}`),

  // Background processes (docs/api.md "Background processes")
  processNotFound: (processId: string) =>
    new WorkerError(Status.NOT_FOUND, `process not found: no background process ${quoted(processId)} in this session (unknown, or an exited one forgotten)`),
  processNotRunning: (processId: string, state: string, operation: string) =>
    new WorkerError(Status.FAILED_PRECONDITION, `cannot ${operation}: background process ${quoted(processId)} is ${state}`),
  portsUnavailable: (why: string) => new WorkerError(Status.FAILED_PRECONDITION, `port URLs are not available for this session: ${why}`),
  backgroundUnavailable: (why: string) => new WorkerError(Status.FAILED_PRECONDITION, `background processes are not available on this worker: ${why}`),

  // Checkpoint errors
  checkpointNotFound: (checkpointId: string) =>
    new WorkerError(
      Status.NOT_FOUND,
      `checkpoint not found: ${quoted(checkpointId)} does not exist in the checkpoint store (never made, or removed by retention)`,
    ),
  archiveFailed: (detail: string) => new WorkerError(Status.INTERNAL, `archive failed: ${detail}`),
  /** Something in the session a checkpoint cannot hold (a FIFO, a socket): it fails naming it, never leaving it out silently. */
  cannotArchive: (path: string, why: string) => new WorkerError(Status.FAILED_PRECONDITION, `cannot checkpoint ${quoted(path, 200)}: ${why}; nothing was kept`),
  checkpointDamaged: (code: Status.NOT_FOUND | Status.INTERNAL | Status.DATA_LOSS, checkpointId: string, what: string) =>
    new WorkerError(code, `checkpoint ${quoted(checkpointId)} cannot be restored: ${what}; nothing was restored`),
  restoreCancelled: (checkpointId: string) =>
    new WorkerError(Status.CANCELLED, `restore of ${quoted(checkpointId)} cancelled: the client cancelled or its deadline passed; nothing was restored`),
  checkpointCorrupted: (checkpointId: string) =>
    new WorkerError(Status.INTERNAL, `checkpoint corrupted: the archive of ${quoted(checkpointId)} does not match its checksum; nothing was restored`),

  // Artifacts
  artifactConflict: (artifactId: string) => new WorkerError(Status.ALREADY_EXISTS, `artifact ${quoted(artifactId)} is already recorded with other facts`),
  nothingUploaded: (artifactId: string) =>
    new WorkerError(Status.NOT_FOUND, `nothing was uploaded for artifact ${quoted(artifactId)}: PUT the bytes to its upload URL first`),

  // Worker-wide
  /** Says nothing of what was wrong with the credentials: that would help a guesser. */
  unauthenticated: () => new WorkerError(Status.UNAUTHENTICATED, 'missing or invalid credentials'),
  shuttingDown: () => new WorkerError(Status.UNAVAILABLE, 'worker is shutting down; retry on another worker'),
  /** An unexpected failure: its kind only; the log has the rest under `ref`. */
  internal: (err: unknown, ref: string) => new WorkerError(Status.INTERNAL, `internal error (${faultOf(err)}); reference ${ref} in the worker's log`),
} as const;

/** A short id tying a client's INTERNAL status to the log line with the details. */
export function newErrorRef(): string {
  return randomBytes(4).toString('hex');
}

/**
 * The one mapping from anything thrown to a call's status: an error with a status (a
 * WorkerError, nice-grpc's own) and the client's own cancellation pass as they are; anything
 * else is INTERNAL with a reference, which `log` writes with the details (unary calls:
 * grpc/mapErrors.ts; task streams: tasks/runTask.ts).
 */
export function asCallError(err: unknown, log: (ref: string, error: string) => void): unknown {
  if (err instanceof ServerError || isAbortError(err)) return err;
  const ref = newErrorRef();
  log(ref, describeThrown(err));
  return errors.internal(err, ref);
}
