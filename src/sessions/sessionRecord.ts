import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { messageOf, WorkerError } from '../errors.js';
import { DamagedRecordError, parseRecord } from '../storage/jsonFile.js';
import { storedSessionConfig, type EffectiveSessionConfig } from './sessionConfig.js';

/**
 * What is kept of a session on disk (`session.json`), written atomically on every change, so a
 * worker that stops (SIGTERM, kill -9, the host going down) adopts it again at its next start:
 * the same id, files, packages, limits, checkpoint chain, artifacts and task history.
 */
export interface SessionRecord {
  version: 1;
  id: string;
  workspaceId: string;
  userId: string;
  config: EffectiveSessionConfig;
  createdAtMs: number;
  lastActivityMs: number;
  /** Host uid of the session's files (undefined: the worker's own). */
  uid: number | undefined;
  /** The uid its files have on its disk itself, where an idmapped mount shows them as `uid`'s (a fork's, an adopted session's). */
  diskUid?: number | undefined;
  /** The size of the session's disk image, MB (0: none), and what its empty filesystem used. */
  diskMb: number;
  diskBaselineBytes: number;
  lastCheckpointId: string;
  artifacts: string[];
  tasks: PersistedTask[];
  /** Background processes started so far (their ids, p1 …, are never given twice, a restart between). */
  processesStarted?: number | undefined;
  /** TERMINATING: destroy was under way; a restart finishes it. */
  state: 'READY' | 'TERMINATING';
  /**
   * The first generation of the task journal (storage/taskJournal.ts) this record does not hold:
   * the lines of it and later ones are applied to `tasks` (withJournal). Absent: none (a record
   * written before the journal).
   */
  journal?: number | undefined;
}

export interface PersistedTask {
  taskId: string;
  toolName: string;
  status: TaskStatus;
  startTimeMs: number;
  endTimeMs: number;
}

const isTask = (t: unknown): t is PersistedTask => {
  const task = t as Partial<PersistedTask> | null;
  return (
    typeof task === 'object' &&
    task !== null &&
    typeof task.taskId === 'string' &&
    typeof task.toolName === 'string' &&
    typeof task.status === 'number' &&
    typeof task.startTimeMs === 'number' &&
    typeof task.endTimeMs === 'number'
  );
};

function isSessionRecord(value: unknown): boolean {
  const r = value as Partial<SessionRecord> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.version === 1 &&
    typeof r.id === 'string' &&
    typeof r.workspaceId === 'string' &&
    typeof r.userId === 'string' &&
    typeof r.config === 'object' &&
    typeof r.createdAtMs === 'number' &&
    typeof r.lastActivityMs === 'number' &&
    (r.uid === undefined || Number.isInteger(r.uid)) &&
    (r.diskUid === undefined || Number.isInteger(r.diskUid)) &&
    typeof r.diskMb === 'number' &&
    typeof r.diskBaselineBytes === 'number' &&
    typeof r.lastCheckpointId === 'string' &&
    Array.isArray(r.artifacts) &&
    r.artifacts.every((a) => typeof a === 'string') &&
    Array.isArray(r.tasks) &&
    r.tasks.every(isTask) &&
    (r.processesStarted === undefined || (Number.isInteger(r.processesStarted) && r.processesStarted >= 0)) &&
    (r.journal === undefined || (Number.isInteger(r.journal) && r.journal >= 0)) &&
    (r.state === 'READY' || r.state === 'TERMINATING')
  );
}

/** A record read back: parsed, shape-checked, its config validated again; DamagedRecordError otherwise. */
export function parseSessionRecord(raw: string, expectedId: string): SessionRecord {
  const record = parseRecord<SessionRecord>(raw, isSessionRecord);
  if (record.id !== expectedId) throw new Error(`it names session ${record.id.slice(0, 80)}, not the directory's`);
  // The config goes through the same checks as a CreateSession's (it may be older than them).
  try {
    record.config = storedSessionConfig(record.config);
  } catch (err) {
    // Of the wrong shape, or refused by CreateSession's checks (a WorkerError): damage either way.
    throw new DamagedRecordError(`its config is damaged: ${err instanceof WorkerError ? err.details : messageOf(err)}`);
  }
  return record;
}

/** The tasks of the task journal's lines, in order (each a task as it was then); lines of another shape are left out. */
export function journalTasks(lines: unknown[]): PersistedTask[] {
  return lines.filter(isTask).map(({ taskId, toolName, status, startTimeMs, endTimeMs }) => ({ taskId, toolName, status, startTimeMs, endTimeMs }));
}

/**
 * `tasks` (a record's: the live worker's registry as it was written, all kept) with the journal's
 * tasks after them applied in order, as that registry applied them: a task running goes to the
 * running ones; a task ending leaves them for the newest place among the finished, which drop
 * their oldest past `historyLimit`. Finished ones first, then running ones, as a record lists
 * them; an id reused lists its finish and its run again.
 */
export function withJournal(tasks: PersistedTask[], journaled: PersistedTask[], historyLimit: number): PersistedTask[] {
  const finished = new Map<string, PersistedTask>();
  const running = new Map<string, PersistedTask>();
  const newest = (map: Map<string, PersistedTask>, task: PersistedTask) => {
    map.delete(task.taskId);
    map.set(task.taskId, task);
  };
  for (const task of tasks) newest(task.status === TaskStatus.STATUS_RUNNING ? running : finished, task);
  for (const task of journaled) {
    if (task.status === TaskStatus.STATUS_RUNNING) {
      newest(running, task);
      continue;
    }
    running.delete(task.taskId);
    newest(finished, task);
    for (const id of finished.keys()) {
      if (finished.size <= historyLimit) break;
      finished.delete(id);
    }
  }
  return [...finished.values(), ...running.values()];
}

/**
 * A session's last activity from its record's and its journal's tasks (journalTasks): a task's
 * start and end are its activity, and the journal has them where the record was not written
 * since (the record's own tasks are not counted: a task an earlier restart cut off ended at that
 * restart, which was no activity). Never later than `now` (a clock set back meanwhile).
 */
export function lastActivity(recorded: number, tasks: PersistedTask[], now: number): number {
  let last = recorded;
  for (const task of tasks) last = Math.max(last, task.startTimeMs, task.endTimeMs);
  return Math.min(last, Math.max(now, recorded));
}

/** A task that was running when the worker went away: it ended then, failed. */
export function cutOff(task: PersistedTask, at: number): PersistedTask {
  return task.status === TaskStatus.STATUS_RUNNING ? { ...task, status: TaskStatus.STATUS_FAILURE, endTimeMs: Math.max(at, task.startTimeMs) } : task;
}
