import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { journalTasks, withJournal, type PersistedTask } from '../../src/sessions/sessionRecord.js';
import { TaskRegistry } from '../../src/sessions/taskRegistry.js';
import { readTaskJournal, TaskJournal } from '../../src/storage/taskJournal.js';

const scratch = mkdtempSync(join(tmpdir(), 'codegen-journal-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let made = 0;
const freshDirectory = () => {
  const dir = join(scratch, `d${made++}`);
  mkdirSync(dir);
  return dir;
};

type Step = { op: 'append'; task: number; status: TaskStatus } | { op: 'record'; lands: boolean } | { op: 'restart' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      task: fc.nat(5),
      status: fc.constantFrom(TaskStatus.STATUS_RUNNING, TaskStatus.STATUS_SUCCESS),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('record' as const), lands: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'restart' as const }) },
);

const taskOf = (n: number, status: TaskStatus, at: number): PersistedTask => ({
  taskId: `task-${n}`,
  toolName: 'run.python',
  status,
  startTimeMs: at,
  endTimeMs: 0,
});

test('the record last landed and the journal from its generation on give every task change made, records landing, failing and restarts between', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
      const dir = freshDirectory();
      // What the worker knows, and the record on disk (none landed yet: an empty one, generation 0).
      const known = new Map<string, PersistedTask>();
      let record: { tasks: PersistedTask[]; journal: number } = { tasks: [], journal: 0 };
      let journal = new TaskJournal(() => dir);
      for (const [at, s] of steps.entries()) {
        if (s.op === 'append') {
          const task = taskOf(s.task, s.status, at);
          known.delete(task.taskId);
          known.set(task.taskId, task);
          journal.append(task);
        } else if (s.op === 'record') {
          const generation = journal.nextGeneration();
          const snapshot = { tasks: [...known.values()], journal: generation };
          // One that never lands (a full disk, a stop mid-write) leaves the record before it.
          if (s.lands) {
            record = snapshot;
            await journal.settled(generation);
          }
        } else {
          // As the worker adopts the session: the record read, its journal resumed at the record's generation.
          journal.close();
          journal = new TaskJournal(() => dir);
          journal.resumeAt(record.journal);
        }
      }
      journal.close();
      // Each task's last change (an id reused is listed finished and running: its run is its last).
      const last = new Map<string, PersistedTask>();
      for (const task of withJournal(record.tasks, journalTasks(await readTaskJournal(dir, record.journal)), Infinity)) last.set(task.taskId, task);
      const byId = (tasks: Iterable<PersistedTask>) => [...tasks].sort((a, b) => a.taskId.localeCompare(b.taskId));
      assert.deepEqual(byId(last.values()), byId(known.values()));
      // Files of generations before the landed record's are gone.
      const left = readdirSync(dir).map((name) => Number(/^tasks\.(\d+)\.log$/.exec(name)?.[1]));
      assert.ok(
        left.every((g) => g >= record.journal),
        `${left.join(',')} vs ${record.journal}`,
      );
    }),
    { numRuns: 300 },
  );
});

test('a journal line cut short (a stop, a full disk) is left out, and so is one of another shape; the lines around them are read', async () => {
  const dir = freshDirectory();
  const journal = new TaskJournal(() => dir);
  journal.append(taskOf(1, TaskStatus.STATUS_RUNNING, 1));
  journal.append({ taskId: 'not a task' });
  // What a write cut short leaves: part of a line, no end. The next line still begins on its own.
  appendFileSync(join(dir, 'tasks.1.log'), '\n{"taskId":"task-2","toolName":"run.py');
  journal.append(taskOf(4, TaskStatus.STATUS_SUCCESS, 4));
  journal.close();
  appendFileSync(join(dir, 'tasks.2.log'), `\n${JSON.stringify(taskOf(3, TaskStatus.STATUS_RUNNING, 3))}`);
  const lines = await readTaskJournal(dir, 1);
  assert.equal(lines.length, 4);
  assert.deepEqual(
    withJournal([taskOf(0, TaskStatus.STATUS_SUCCESS, 0)], journalTasks(lines), Infinity).map((t) => t.taskId),
    ['task-0', 'task-4', 'task-1', 'task-3'],
  );
  assert.deepEqual(await readTaskJournal(dir, 2), [taskOf(3, TaskStatus.STATUS_RUNNING, 3)], 'only generations from the one asked');
});

test('a record listing a reused id twice (finished, then running again): restored, the id names its run, cut off, as the newest', () => {
  const first = taskOf(1, TaskStatus.STATUS_SUCCESS, 1);
  const again = taskOf(1, TaskStatus.STATUS_RUNNING, 9);
  const other = taskOf(2, TaskStatus.STATUS_SUCCESS, 2);
  const tasks = withJournal([first, other, again], [], 1);
  assert.deepEqual(tasks, [first, other, again], 'the record as written');
  const registry = new TaskRegistry('s', 1);
  registry.restore(
    tasks.filter((t) => t !== again),
    [{ ...again, status: TaskStatus.STATUS_FAILURE, endTimeMs: 10 }],
  );
  assert.equal(registry.get('task-1')?.status, TaskStatus.STATUS_FAILURE);
  assert.deepEqual(registry.recentTaskIds(), ['task-1', 'task-2']);
});

test('a journal in a directory that does not exist yet starts at generation 1', () => {
  const journal = new TaskJournal(() => join(scratch, 'nowhere'));
  assert.equal(journal.nextGeneration(), 1, 'no line written yet: a record names generation 1');
  assert.throws(() => journal.append({}), /ENOENT/);
});

// Adoption must hold what the live worker's registry held (helper-32: a second restart dropped
// tasks the first had kept past the history's bound): the record as written (all of it) and the
// journal's tasks after it, bounded as the registry bounds them as tasks end.

type RegistryStep = { op: 'start'; task: number } | { op: 'finish'; pick: number; status: TaskStatus } | { op: 'record' };

const registryStep: fc.Arbitrary<RegistryStep> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('start' as const), task: fc.nat(7) }) },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant('finish' as const), pick: fc.nat(), status: fc.constantFrom(TaskStatus.STATUS_SUCCESS, TaskStatus.STATUS_FAILURE) }),
  },
  { weight: 1, arbitrary: fc.constant({ op: 'record' as const }) },
);

test("record and journal replayed give the registry's tasks: finished ones in its order and bound, running ones all", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 4 }), fc.array(registryStep, { maxLength: 60 }), (limit, steps) => {
      const registry = new TaskRegistry('s', limit);
      // As a session journals (every start and end: a restart then knows each) and writes its record.
      const lines: PersistedTask[] = [];
      const state = (t: PersistedTask): PersistedTask => ({
        taskId: t.taskId,
        toolName: t.toolName,
        status: t.status,
        startTimeMs: t.startTimeMs,
        endTimeMs: t.endTimeMs,
      });
      registry.onChange = (task) => lines.push(state(task));
      let record: PersistedTask[] = [];
      let since = 0;
      const running = new Map<string, ReturnType<TaskRegistry['start']>>();
      for (const s of steps) {
        if (s.op === 'start') {
          const taskId = `t${s.task}`;
          if (!running.has(taskId)) running.set(taskId, registry.start(taskId, 'echo'));
        } else if (s.op === 'finish') {
          const ids = [...running.keys()];
          if (ids.length === 0) continue;
          const taskId = ids[s.pick % ids.length]!;
          registry.finish(running.get(taskId)!, s.status);
          running.delete(taskId);
        } else {
          record = registry.snapshot();
          since = lines.length;
        }
      }
      const replayed = withJournal(record, lines.slice(since), limit);
      const live = registry.snapshot();
      const isRunning = (t: PersistedTask) => t.status === TaskStatus.STATUS_RUNNING;
      assert.deepEqual(
        replayed.filter((t) => !isRunning(t)).map((t) => [t.taskId, t.status]),
        live.filter((t) => !isRunning(t)).map((t) => [t.taskId, t.status]),
      );
      assert.deepEqual(
        replayed
          .filter(isRunning)
          .map((t) => t.taskId)
          .sort(),
        live
          .filter(isRunning)
          .map((t) => t.taskId)
          .sort(),
      );
    }),
    { numRuns: 500 },
  );
});

test('a journal whose lines all fail (a full disk) goes on in one generation: records written meanwhile start no new file each', () => {
  const dir = freshDirectory();
  const journal = new TaskJournal(() => dir);
  journal.resumeAt(5);
  // A generation whose file takes no byte, as on a full disk.
  symlinkSync('/dev/full', join(dir, 'tasks.5.log'));
  for (let attempt = 0; attempt < 50; attempt++) {
    assert.throws(() => journal.append(taskOf(attempt, TaskStatus.STATUS_SUCCESS, attempt)), /ENOSPC/);
    assert.equal(journal.nextGeneration(), 5, 'no line written: the record written now names the same generation');
  }
  assert.equal(journal.lines, 0);
  assert.deepEqual(readdirSync(dir), ['tasks.5.log']);
  journal.close();
  // Once a line is written whole, the next record starts a new generation as before.
  rmSync(join(dir, 'tasks.5.log'));
  journal.append(taskOf(1, TaskStatus.STATUS_SUCCESS, 1));
  assert.equal(journal.lines, 1);
  assert.equal(journal.nextGeneration(), 6);
  journal.close();
});
