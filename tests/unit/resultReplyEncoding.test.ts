import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TaskResponse, type TaskResult } from '../../gen/codegen/v1/task_execution.js';
import { encodeLargeResultReply, encodeResultReply } from '../../src/grpc/resultReplyEncoding.js';

let seed = 7;
const random = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * n);
const pick = <T>(items: readonly T[]): T => items[random(items.length)]!;
const PIECES = ['', 'a', 'contents', 'é', '\u{1F600}', '\uD800', '\0', 'x'.repeat(200), 'y'.repeat(20_000)];
const someText = () => Array.from({ length: random(4) }, () => pick(PIECES)).join('');
const INTS = [0, 1, -1, 127, 128, 300, 2 ** 31 - 1, -(2 ** 31), 4];

test('encodeResultReply writes the bytes the generated encoder writes, for results of every shape', () => {
  for (let i = 0; i < 500; i++) {
    const outputs: Record<string, string> = {};
    for (let k = random(5); k > 0; k--) outputs[someText()] = someText();
    const result: TaskResult = { status: pick(INTS), outputs, error: someText(), exitCode: pick(INTS) };
    const taskId = someText();
    const expected = Buffer.from(TaskResponse.encode({ taskId, payload: { $case: 'result', value: result } }).finish());
    assert.deepEqual(Buffer.from(encodeResultReply(taskId, result)), expected, JSON.stringify({ taskId, result }).slice(0, 300));
  }
});

test('encodeLargeResultReply takes results with an output of 64 KiB or more, and nothing else', () => {
  const result = (contents: string): TaskResponse => ({
    taskId: 't',
    payload: { $case: 'result', value: { status: 1, outputs: { contents }, error: '', exitCode: 0 } },
  });
  assert.equal(encodeLargeResultReply(result('x'.repeat(1000))), undefined);
  assert.equal(
    encodeLargeResultReply({ taskId: 't', payload: { $case: 'progress', value: { percentComplete: 1, stage: '', message: 'x'.repeat(70_000) } } }),
    undefined,
  );
  const large = result('x'.repeat(70_000));
  assert.deepEqual(TaskResponse.decode(Buffer.from(encodeLargeResultReply(large)!)), large);
});
