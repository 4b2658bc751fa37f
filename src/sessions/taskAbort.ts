/** Why a task was stopped before it finished; carried as the AbortSignal's reason. */
export type TaskAbortKind = 'cancelled' | 'timeout' | 'client_gone' | 'session_destroyed' | 'shutdown';

export class TaskAbort extends Error {
  override name = 'TaskAbort';
  constructor(
    readonly kind: TaskAbortKind,
    message: string,
  ) {
    super(message);
  }
}
