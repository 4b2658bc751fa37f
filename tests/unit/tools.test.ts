import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Status } from 'nice-grpc';
import { WorkerError } from '../../src/errors.js';
import { checkArguments, parseEncoding } from '../../src/tools/arguments.js';
import { fakeSandbox } from '../helpers/fakeSessions.js';
import { languagesOfTool, toolNames, toolsFor } from '../../src/tools/index.js';
import { TaskRequest } from '../../gen/codegen/v1/task_execution.js';
import { decodeTaskRequest, LARGE_ARGUMENT_BYTES } from '../../src/grpc/taskRequestDecoding.js';
import { setTextBytes, textBytesOf } from '../../src/tools/textBytes.js';
import { processOutcome } from '../../src/tools/runCode.js';
import type { SandboxedResult } from '../../src/sandbox/process/processSpec.js';
import { WriteGate } from '../../src/sessions/writeGate.js';

// What each tool accepts, checked by parse() before anything runs (for a python session).
const TOOLS = toolsFor('python');
const pythonSession = { id: 'session-1', userId: 'user-1', sandbox: fakeSandbox(), writes: new WriteGate(), nextProcessNumber: () => Promise.resolve(1) };
const tool = (name: string) => {
  const found = TOOLS.get(name)!;
  return { parse: (args: Record<string, string>) => found.parse(args, pythonSession) };
};
const invalid = (pattern: RegExp) => (err: unknown) => err instanceof WorkerError && err.code === Status.INVALID_ARGUMENT && pattern.test(err.details);

test('a python session offers exactly the documented tools; only run.python, run.shell, pkg.install and proc.output stream', () => {
  assert.deepEqual(
    [...TOOLS.keys()],
    [
      'echo',
      'fs.write',
      'fs.read',
      'fs.list',
      'run.python',
      'run.shell',
      'pkg.install',
      'proc.list',
      'proc.output',
      'proc.stdin',
      'proc.signal',
      'proc.resize',
      'port.url',
    ],
  );
  assert.deepEqual(
    [...TOOLS.values()].filter((t) => t.kind === 'process').map((t) => t.name),
    ['run.python', 'run.shell', 'pkg.install', 'proc.output'],
  );
  assert.deepEqual(toolNames(['python']), [...TOOLS.keys()]);
  assert.deepEqual(languagesOfTool('run.python'), ['python']);
  assert.deepEqual(languagesOfTool('run.shell'), [], 'every session has it');
});

test('run.shell needs a command (not empty, no NUL, at most 64 KiB) and takes a cwd inside the workspace', () => {
  assert.deepEqual(tool('run.shell').parse({ command: 'ls -la' }), { command: 'ls -la', cwd: '', segments: [], background: false });
  assert.deepEqual(tool('run.shell').parse({ command: 'go test ./...', cwd: 'pkg/sub', background: 'true' }), {
    command: 'go test ./...',
    cwd: 'pkg/sub',
    segments: ['pkg', 'sub'],
    background: true,
  });
  assert.throws(() => tool('run.shell').parse({ command: 'true', background: 'yes' }), invalid(/background must be 'true' or 'false'/));
  assert.deepEqual((tool('run.shell').parse({ command: 'true', cwd: '.' }) as { segments: string[] }).segments, []);
  assert.throws(() => tool('run.shell').parse({}), invalid(/run\.shell requires 'command'/));
  assert.throws(() => tool('run.shell').parse({ command: '  ' }), invalid(/command is empty/));
  assert.throws(() => tool('run.shell').parse({ command: 'a\0b' }), invalid(/NUL byte/));
  assert.throws(() => tool('run.shell').parse({ command: 'x'.repeat(65 * 1024) }), invalid(/longer than 65536 bytes/));
  assert.throws(() => tool('run.shell').parse({ command: 'ls', cwd: '../..' }), invalid(/'\.\.' segments are not allowed/));
  assert.throws(() => tool('run.shell').parse({ command: 'ls', cwd: '/etc' }), invalid(/absolute paths are not allowed/));
  assert.throws(() => tool('run.shell').parse({ command: 'ls', env: 'X=1' }), invalid(/does not take 'env'/));
});

test('checkArguments: unknown names and missing required ones are refused, naming them', () => {
  assert.deepEqual(checkArguments('t', { a: '1' }, ['a'], ['b']), { a: '1' });
  assert.throws(
    () => checkArguments('t', { a: '1', x: '2', y: '3' }, ['a'], ['b']),
    invalid(/^invalid argument: t does not take 'x', 'y'; it takes 'a', 'b'$/),
  );
  assert.throws(() => checkArguments('t', {}, ['a', 'c']), invalid(/^invalid argument: t requires 'a', 'c'$/));
  assert.doesNotThrow(() => checkArguments('t', { a: '' }, ['a']), 'an empty value is given');
});

test("parseEncoding: utf-8 (also 'utf8' and unset) or base64; anything else refused", () => {
  for (const value of [undefined, '', 'utf-8', 'utf8']) assert.equal(parseEncoding('fs.read', value), 'utf-8');
  assert.equal(parseEncoding('fs.read', 'base64'), 'base64');
  assert.throws(() => parseEncoding('fs.read', 'latin1'), invalid(/fs\.read encoding must be 'utf-8' or 'base64', got 'latin1'/));
});

test('fs.write takes text or strict padded base64, and refuses the workspace root and bad paths', () => {
  assert.deepEqual(tool('fs.write').parse({ path: 'a/b.txt', contents: 'héllo' }), {
    path: 'a/b.txt',
    segments: ['a', 'b.txt'],
    bytes: Buffer.from('héllo'),
    held: 'héllo'.length + Buffer.byteLength('héllo'),
    append: false,
  });
  assert.equal((tool('fs.write').parse({ path: 'a', contents: 'x', append: 'true' }) as { append: boolean }).append, true);
  assert.throws(() => tool('fs.write').parse({ path: 'a', contents: 'x', append: 'yes' }), invalid(/append/));
  assert.deepEqual(
    (tool('fs.write').parse({ path: 'x.bin', contents: 'AAEC/w==', encoding: 'base64' }) as { bytes: Buffer }).bytes,
    Buffer.from([0, 1, 2, 255]),
  );
  for (const contents of ['AAE', 'AA=C', '====', 'A===', 'AB$C', 'YQ==YQ==']) {
    assert.throws(() => tool('fs.write').parse({ path: 'x', contents, encoding: 'base64' }), invalid(/contents are not valid base64/), contents);
  }
  for (const path of ['', '.', './'])
    assert.throws(() => tool('fs.write').parse({ path, contents: 'x' }), invalid(/names the workspace root, not a file/), path);
  assert.throws(() => tool('fs.write').parse({ path: '../x', contents: 'x' }), invalid(/'\.\.' segments are not allowed/));
  assert.throws(() => tool('fs.write').parse({ path: 'x' }), invalid(/fs\.write requires 'contents'/));
});

test('fs.write takes large contents as the request bytes, undecoded, holding them once (base64 with what it decodes to)', () => {
  const contents = 'é'.repeat(LARGE_ARGUMENT_BYTES);
  const request = Buffer.from(
    TaskRequest.encode({ taskId: '', sessionId: 's', toolName: 'fs.write', arguments: { path: 'big.txt', contents }, constraints: undefined }).finish(),
  );
  const args = decodeTaskRequest(request).arguments;
  let decoded = 0;
  const carried = textBytesOf(args, 'contents')!;
  setTextBytes(args, 'contents', carried, (bytes) => (decoded++, bytes.toString('utf8')));
  const parsed = tool('fs.write').parse(args) as { bytes: Buffer; held: number; asText: () => string };
  assert.equal(parsed.bytes.buffer, request.buffer, 'the request bytes themselves');
  assert.ok(parsed.bytes.equals(Buffer.from(contents)));
  assert.equal(parsed.held, Buffer.byteLength(contents), 'held once: no text, no second copy');
  assert.equal(decoded, 0, 'not decoded to be checked');
  assert.equal(parsed.asText(), contents, 'its text when run() finds it is not UTF-8');
  const base64 = Buffer.alloc(LARGE_ARGUMENT_BYTES, 7).toString('base64');
  const asBase64 = decodeTaskRequest(
    TaskRequest.encode({
      taskId: '',
      sessionId: 's',
      toolName: 'fs.write',
      arguments: { path: 'b', contents: base64, encoding: 'base64' },
      constraints: undefined,
    }).finish(),
  ).arguments;
  const parsedBase64 = tool('fs.write').parse(asBase64) as { bytes: Buffer; held: number; base64?: true };
  assert.ok(parsedBase64.bytes.equals(Buffer.from(base64)), 'the base64 text as the request bytes, decoded by run()');
  assert.equal(parsedBase64.base64, true);
  assert.equal(parsedBase64.held, base64.length + LARGE_ARGUMENT_BYTES, 'the text and what it decodes to');
});

test('fs.read and fs.list take a workspace path; fs.list takes the root', () => {
  assert.deepEqual(tool('fs.read').parse({ path: 'd/f', encoding: 'base64' }), {
    path: 'd/f',
    segments: ['d', 'f'],
    encoding: 'base64',
    offset: 0,
    length: Infinity,
  });
  assert.deepEqual(tool('fs.read').parse({ path: 'f', offset: '8', length: '16' }) as { offset: number; length: number }, {
    path: 'f',
    segments: ['f'],
    encoding: 'utf-8',
    offset: 8,
    length: 16,
  });
  assert.throws(() => tool('fs.read').parse({ path: 'f', offset: '-1' }), invalid(/offset must be a whole number/));
  assert.deepEqual(tool('fs.list').parse({ path: '' }), { path: '', segments: [] });
  assert.throws(() => tool('fs.read').parse({ path: '/etc/passwd' }), invalid(/absolute paths are not allowed/));
  assert.throws(() => tool('fs.list').parse({ path: 'a', recursive: 'true' }), invalid(/fs\.list does not take 'recursive'/));
});

test('run.python needs code; pkg.install needs requirements and refuses pip options', () => {
  assert.deepEqual(tool('run.python').parse({ code: 'print(1)' }), { code: 'print(1)' });
  assert.throws(() => tool('run.python').parse({}), invalid(/run\.python requires 'code'/));
  assert.deepEqual(tool('pkg.install').parse({ requirements: 'requests\n# c\nnumpy==1.26' }), ['requests', 'numpy==1.26']);
  assert.throws(() => tool('pkg.install').parse({ requirements: '--index-url http://evil' }), invalid(/not pip options/));
});

test("a run tool's result carries exactly the outputs it declares when every one applies (capped streams, a limit)", async () => {
  const ctx = { emit: async () => undefined };
  const stopped: SandboxedResult = {
    exitCode: 137,
    stdout: { text: 'o', truncated: true },
    stderr: { text: 'e', truncated: true },
    outputLimitExceeded: false,
    killedBy: 'memory',
  };
  const { outputs } = await processOutcome(ctx, 'python', stopped);
  assert.deepEqual(Object.keys(outputs).sort(), [...TOOLS.get('run.python')!.outputs].sort(), 'run.python');
  // run.shell declares a background start's outputs besides.
  assert.deepEqual([...Object.keys(outputs), 'process_id', 'pid'].sort(), [...TOOLS.get('run.shell')!.outputs].sort(), 'run.shell');
});
