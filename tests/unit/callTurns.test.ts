import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CallTurns } from '../../src/tasks/callTurns.js';
import { keepingAlive } from '../helpers/keepingAlive.js';

const settled = () => new Promise((resolve) => setImmediate(resolve));

const never = new AbortController().signal;

/** Takes that resolve are counted as they do. */
function taking(turns: CallTurns, sessionId: string, n: number, signal = never) {
  const ends: (() => void)[] = [];
  const all = Array.from({ length: n }, () => turns.take(sessionId, signal).then((end) => (ends.push(end), end)));
  return { ends, all };
}

test('a session alone is never held back', async () => {
  const turns = new CallTurns({ perSession: 1, holdMs: 60_000, recentMs: 60_000 });
  const { ends } = taking(turns, 'a', 16);
  await settled();
  assert.equal(ends.length, 16);
  for (const end of ends) end();
});

test('while another session wants turns, a busy one holds one at a time: its next call goes when its turn ends', async () => {
  const turns = new CallTurns({ perSession: 1, holdMs: 60_000, recentMs: 60_000 });
  const other = await turns.take('quiet', never);
  const busy = taking(turns, 'busy', 3);
  await settled();
  assert.equal(busy.ends.length, 1, 'one turn while the quiet session holds one');
  busy.ends[0]!();
  await settled();
  assert.equal(busy.ends.length, 2, 'the next in line goes when it ends');
  // The quiet session is never held back by the busy one.
  const again = await turns.take('quiet', never);
  other();
  again();
  busy.ends[1]!();
  await settled();
  assert.equal(busy.ends.length, 3);
  busy.ends[2]!();
});

test('sessions as busy as each other are not held back', async () => {
  const turns = new CallTurns({ perSession: 1, holdMs: 60_000, recentMs: 60_000 });
  const a = taking(turns, 'a', 4);
  const b = taking(turns, 'b', 4);
  await settled();
  assert.ok(a.ends.length >= 3 && b.ends.length >= 3, `each holds about as many as the other asks for: ${a.ends.length}, ${b.ends.length}`);
  for (const end of [...a.ends, ...b.ends]) end();
  await settled();
  assert.equal(a.ends.length + b.ends.length, 8);
  for (const end of [...a.ends, ...b.ends]) end();
});

test('a turn ends by itself after holdMs, and the waiting call goes then', () =>
  keepingAlive(async () => {
    const turns = new CallTurns({ perSession: 1, holdMs: 5, recentMs: 60_000 });
    await turns.take('quiet', never);
    const first = await turns.take('busy', never);
    await turns.take('busy', never); // waits for `first` to lapse: resolves only if it does
    first(); // ending a lapsed turn again changes nothing
  }));

test('a session that no longer wants turns stops holding the others back', () =>
  keepingAlive(async () => {
    let now = 0;
    const turns = new CallTurns({ perSession: 1, holdMs: 60_000, recentMs: 5 }, () => now);
    (await turns.take('quiet', never))();
    await turns.take('busy', never);
    let second = false;
    const waiting = turns.take('busy', never).then(() => (second = true));
    await settled();
    assert.equal(second, false, 'the quiet session took a turn lately');
    now += 10;
    await waiting; // the look again after recentMs lets it go
  }));

test('a call cancelled while it waits takes no turn, and the next in line still goes', async () => {
  const turns = new CallTurns({ perSession: 1, holdMs: 60_000, recentMs: 60_000 });
  await turns.take('quiet', never);
  const held = await turns.take('busy', never);
  const cancel = new AbortController();
  const cancelled = turns.take('busy', cancel.signal);
  let next = false;
  const waiting = turns.take('busy', never).then(() => (next = true));
  cancel.abort(new Error('cancelled'));
  await assert.rejects(cancelled, /cancelled/);
  await settled();
  assert.equal(next, false);
  held();
  await waiting;
});

test('othersWant: whether a session other than this one holds, waits for or lately took a turn', async () => {
  let now = 0;
  const turns = new CallTurns({ perSession: 1, holdMs: 60_000, recentMs: 5 }, () => now);
  assert.equal(turns.othersWant('a'), false, 'no one at all');
  const a = await turns.take('a', never);
  assert.equal(turns.othersWant('a'), false, 'only itself');
  assert.equal(turns.othersWant('b'), true, 'a holds one');
  a();
  assert.equal(turns.othersWant('b'), true, 'a took one lately');
  now += 10;
  assert.equal(turns.othersWant('b'), false, 'a took its last one too long ago');
});
