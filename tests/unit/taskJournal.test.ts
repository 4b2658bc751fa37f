import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { TaskStatus } from '../../gen/codegen/v1/common.js';
import { withJournal, type PersistedTask } from '../../src/sessions/sessionRecord.js';
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
      assert.deepEqual(withJournal(record.tasks, await readTaskJournal(dir, record.journal)), [...known.values()]);
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
    withJournal([taskOf(0, TaskStatus.STATUS_SUCCESS, 0)], lines).map((t) => t.taskId),
    ['task-0', 'task-1', 'task-4', 'task-3'],
  );
  assert.deepEqual(await readTaskJournal(dir, 2), [taskOf(3, TaskStatus.STATUS_RUNNING, 3)], 'only generations from the one asked');
});

test("a record listing a reused id twice (finished, then running again) keeps its last entry, in that entry's place", () => {
  const first = taskOf(1, TaskStatus.STATUS_SUCCESS, 1);
  const again = taskOf(1, TaskStatus.STATUS_RUNNING, 9);
  assert.deepEqual(withJournal([first, taskOf(2, TaskStatus.STATUS_SUCCESS, 2), again], []), [taskOf(2, TaskStatus.STATUS_SUCCESS, 2), again]);
});

test('a journal in a directory that does not exist yet starts at generation 1', () => {
  const journal = new TaskJournal(() => join(scratch, 'nowhere'));
  assert.equal(journal.nextGeneration(), 2);
  assert.throws(() => journal.append({}), /ENOENT/);
});
