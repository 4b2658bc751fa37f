import assert from 'node:assert/strict';
import { test } from 'node:test';
import { childrenOf, procStatus, processState, statFields, statusNumbers, zombieWaitStatus } from '../../src/sandbox/process/procfs.js';

test('stat fields start after the last parenthesis, whatever the command name holds', () => {
  // A name a session chose: spaces, parentheses and a fake state inside it.
  const line = '4242 (a) Z 1 (x) b) S 1 4242 4242 0 -1 4194560 120 0 0 0 7 3 0 0 20 0 1 0 99 1000 50';
  const fields = statFields(line);
  assert.equal(fields[0], 'S');
  assert.equal(fields[1], '1');
  assert.equal(fields[11], '7'); // utime, field 14 of proc(5)
});

test('status lines are read as numbers by name, and a missing one is empty', () => {
  const status = 'Name:\tpython3\nUid:\t200001\t200001\t200001\t200001\nPPid:\t7\nNSpid:\t9123\t4\n';
  assert.deepEqual(statusNumbers(status, 'Uid'), [200001, 200001, 200001, 200001]);
  assert.deepEqual(statusNumbers(status, 'PPid'), [7]);
  assert.deepEqual(statusNumbers(status, 'NSpid'), [9123, 4]);
  assert.deepEqual(statusNumbers(status, 'Gid'), []);
  // A name is matched at the start of its line only.
  assert.deepEqual(statusNumbers('Name:\tUid: 5\n', 'Uid'), []);
});

test("this process's own entries read as they are; a process that is gone reads as nothing", () => {
  assert.equal(procStatus(process.pid)?.ppid, process.ppid);
  assert.equal(procStatus(process.pid)?.uid, process.getuid?.());
  assert.match(processState(process.pid) ?? '', /^[RS]$/);
  assert.equal(zombieWaitStatus(process.pid), undefined);
  const gone = 2 ** 22 + 1; // above the kernel's largest pid
  assert.equal(procStatus(gone), undefined);
  assert.equal(processState(gone), undefined);
  assert.deepEqual(childrenOf(gone), []);
});
