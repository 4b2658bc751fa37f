import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServerError, Status } from 'nice-grpc';
import { errors, faultOf, MAX_MESSAGE_BYTES, newErrorRef, quoted, WorkerError } from '../../src/errors.js';

test('quoted: JSON-quoted, cut to the limit with an ellipsis', () => {
  assert.equal(quoted('abc'), '"abc"');
  assert.equal(quoted('a"b\n'), '"a\\"b\\n"');
  assert.equal(quoted('x'.repeat(64)), `"${'x'.repeat(64)}"`);
  assert.equal(quoted('x'.repeat(65)), `"${'x'.repeat(64)}…"`);
  assert.equal(quoted('abcdef', 3), '"abc…"');
});

test('faultOf: errno code and system call only, never the message (it carries host paths)', () => {
  const enospc = Object.assign(new Error("ENOSPC: no space left on device, open '/srv/data/sessions/x'"), { code: 'ENOSPC', syscall: 'open' });
  assert.equal(faultOf(enospc), 'ENOSPC in open');
  assert.equal(faultOf(Object.assign(new Error('/secret/path'), { code: 'EIO' })), 'EIO');
  assert.equal(faultOf(new TypeError('/secret/path is not a function')), 'TypeError');
  assert.equal(faultOf(Object.assign(new Error('x'), { code: 14 })), 'Error', 'a numeric code is not an errno');
  assert.equal(faultOf(undefined), 'an unexpected error');
  assert.equal(faultOf(null), 'an unexpected error');
  assert.equal(faultOf('a thrown string'), 'an unexpected error');
});

test('a WorkerError is a ServerError with its code, and its message is at most 1 KiB of UTF-8', () => {
  const short = new WorkerError(Status.NOT_FOUND, 'gone');
  assert.ok(short instanceof ServerError);
  assert.equal(short.code, Status.NOT_FOUND);
  assert.equal(short.details, 'gone');
  assert.equal(short.name, 'WorkerError');

  const exact = 'x'.repeat(MAX_MESSAGE_BYTES);
  assert.equal(new WorkerError(Status.INTERNAL, exact).details, exact, 'exactly 1 KiB is kept whole');

  const ascii = new WorkerError(Status.INTERNAL, 'y'.repeat(5000)).details;
  assert.equal(Buffer.byteLength(ascii), MAX_MESSAGE_BYTES);
  assert.ok(ascii.endsWith('…'));
  assert.equal(ascii, `${'y'.repeat(MAX_MESSAGE_BYTES - 3)}…`);
});

test('the 1 KiB cap counts bytes, not characters: multi-byte text is cut shorter', () => {
  for (const text of ['é'.repeat(1000), '中'.repeat(700), 'a' + '😀'.repeat(600), 'ab' + 'é'.repeat(2000)]) {
    const details = new WorkerError(Status.INVALID_ARGUMENT, text).details;
    assert.ok(Buffer.byteLength(details, 'utf8') <= MAX_MESSAGE_BYTES, `${text.slice(0, 3)}: ${Buffer.byteLength(details)} bytes`);
    assert.ok(details.endsWith('…'));
    assert.ok(text.startsWith(details.slice(0, -1)), 'a prefix of the message');
    assert.ok(Buffer.byteLength(details) > MAX_MESSAGE_BYTES - 8, 'not cut more than one character short');
  }
});

test('a capped message never ends in half a character', () => {
  const details = new WorkerError(Status.INVALID_ARGUMENT, 'ab' + '😀'.repeat(600)).details;
  const body = details.slice(0, -1);
  const last = body.charCodeAt(body.length - 1);
  assert.ok(
    Buffer.from(body, 'utf8').toString('utf8') === body,
    `the text before the ellipsis ends in U+${last.toString(16).toUpperCase()}, half of a surrogate pair`,
  );
});

test("the catalogue's errors carry the codes of the reference and quote client input shortened", () => {
  const cases: [WorkerError, Status, RegExp][] = [
    [errors.sessionNotFound('s-1'), Status.NOT_FOUND, /^session not found: "s-1"/],
    [errors.capacityExceeded(4), Status.RESOURCE_EXHAUSTED, /maximum of 4 sessions/],
    [errors.invalidSessionState('s', 'TERMINATING', 'run a task'), Status.FAILED_PRECONDITION, /cannot run a task while session "s" is TERMINATING/],
    [errors.taskNotFound('t', 's'), Status.NOT_FOUND, /no task "t" in session "s"/],
    [errors.taskTimeout(5), Status.DEADLINE_EXCEEDED, /its 5 s timeout/],
    [errors.taskCancelled('by CancelTask'), Status.CANCELLED, /^task cancelled: by CancelTask$/],
    [errors.taskAlreadyRunning('t', 's'), Status.ALREADY_EXISTS, /task "t" is already running/],
    [errors.invalidArgument('x'), Status.INVALID_ARGUMENT, /^invalid argument: x$/],
    [errors.invalidPath('../x', 'no'), Status.INVALID_ARGUMENT, /^invalid path "\.\.\/x": no$/],
    [errors.fileNotFound('a.txt'), Status.NOT_FOUND, /"a\.txt" does not exist/],
    [errors.permissionDenied('a', 'read-only'), Status.PERMISSION_DENIED, /^permission denied for "a": read-only$/],
    [
      errors.readOnlyDisk('"a"'),
      Status.FAILED_PRECONDITION,
      /^the session's disk is read-only \(the kernel remounted it after write errors\); "a" cannot be written/,
    ],
    [errors.pythonNotFound('x'), Status.FAILED_PRECONDITION, /^python not found/],
    [errors.packageInstallFailed('x'), Status.INTERNAL, /^package install failed/],
    [errors.tooLarge('big'), Status.RESOURCE_EXHAUSTED, /^big$/],
    [errors.checkpointNotFound('c'), Status.NOT_FOUND, /checkpoint not found: "c"/],
    [errors.checkpointDamaged(Status.NOT_FOUND, 'c', 'gone'), Status.NOT_FOUND, /"c" cannot be restored: gone; nothing was restored/],
    [errors.checkpointCorrupted('c'), Status.INTERNAL, /does not match its checksum/],
    [errors.shuttingDown(), Status.UNAVAILABLE, /shutting down/],
  ];
  for (const [err, code, pattern] of cases) {
    assert.equal(err.code, code, err.details);
    assert.match(err.details, pattern);
  }
  // Client input is quoted shortened: 64 characters by default, paths 200.
  assert.ok(errors.sessionNotFound('s'.repeat(1000)).details.includes(`"${'s'.repeat(64)}…"`));
  assert.ok(errors.fileNotFound('p'.repeat(1000)).details.includes(`"${'p'.repeat(200)}…"`));
});

test('an internal error names its kind and reference, nothing of its message', () => {
  const err = errors.internal(Object.assign(new Error("EACCES: permission denied, mkdir '/srv/secret'"), { code: 'EACCES', syscall: 'mkdir' }), 'abcd1234');
  assert.equal(err.code, Status.INTERNAL);
  assert.equal(err.details, "internal error (EACCES in mkdir); reference abcd1234 in the worker's log");
  const ref = newErrorRef();
  assert.match(ref, /^[0-9a-f]{8}$/);
  assert.notEqual(newErrorRef(), ref);
});
