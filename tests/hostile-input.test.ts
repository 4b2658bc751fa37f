// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { TaskExecutionDefinition, TaskResponse } from '../gen/codegen/v1/task_execution.js';
import { runTaskWithin, runTool } from './helpers/tasks.js';
import { startWorker, type RunningWorker } from './helpers/worker.js';

// One test per way a careless or hostile client got a wrong answer: the status says what is
// wrong, the message is short, quotes input shortened and names no host path.

const MAIN = new URL('../src/main.js', import.meta.url).pathname;
/** Every call has a deadline: a hang fails the test instead of stalling it. */
const CALL = { deadline: 20_000 };
let worker: RunningWorker;
let sessionId: string;

before(async () => {
  worker = await startWorker();
  sessionId = (await worker.sessions.createSession({ workspaceId: 'hostile' }, CALL)).sessionId;
});

after(async () => worker?.stop());

async function failure(call: Promise<unknown>): Promise<ClientError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ClientError) return err;
    throw err;
  }
  assert.fail('the call succeeded');
}

function assertShortAndClean(err: { details: string }, what: string): void {
  assert.ok(Buffer.byteLength(err.details) <= 1024, `${what}: ${Buffer.byteLength(err.details)}-byte message`);
  assert.ok(!err.details.includes(worker.dataDir) && !err.details.includes('/proc/self/fd') && !/\n\s+at /.test(err.details), `${what}: ${err.details}`);
}

test('a 100 kB session id, task id, tool name or path, or a 10,000-entry arguments map, is INVALID_ARGUMENT with a short message', async () => {
  const big = 'x'.repeat(100_000);
  const cases: [string, () => Promise<unknown>][] = [
    ['GetSessionStatus session_id', () => worker.sessions.getSessionStatus({ sessionId: big }, CALL)],
    ['DestroySession session_id', () => worker.sessions.destroySession({ sessionId: big }, CALL)],
    ['GetTaskStatus task_id', () => worker.tasks.getTaskStatus({ sessionId, taskId: big }, CALL)],
    ['CancelTask task_id', () => worker.tasks.cancelTask({ sessionId, taskId: big }, CALL)],
    ['RestoreSession checkpoint_id', () => worker.sessions.restoreSession({ checkpointId: big }, CALL)],
    ['CreateSession workspace_id', () => worker.sessions.createSession({ workspaceId: big }, CALL)],
  ];
  for (const [what, call] of cases) {
    const err = await failure(call());
    assert.equal(err.code, Status.INVALID_ARGUMENT, `${what}: ${Status[err.code]} ${err.details.slice(0, 200)}`);
    assert.match(err.details, /100000 characters long; at most \d+ are allowed/, what);
    assertShortAndClean(err, what);
  }
  const taskCases: [string, Parameters<RunningWorker['tasks']['executeTask']>[0], RegExp][] = [
    ['tool name', { sessionId, toolName: big, arguments: {} }, /tool_name is 100000 characters long/],
    ['task id', { sessionId, taskId: big, toolName: 'echo', arguments: { message: 'x' } }, /task_id is 100000 characters long/],
    ['path', { sessionId, toolName: 'fs.read', arguments: { path: big } }, /longer than 4096 bytes/],
    [
      'arguments',
      { sessionId, toolName: 'echo', arguments: Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`a${i}`, 'v'])) },
      /arguments has 10000 entries; at most 32/,
    ],
  ];
  for (const [what, request, pattern] of taskCases) {
    const run = await runTaskWithin(worker.tasks, request, 20_000);
    assert.equal(run.code, Status.INVALID_ARGUMENT, `${what}: ${Status[run.code]} ${run.error?.details.slice(0, 200)}`);
    assert.match(run.error!.details, pattern, what);
    assertShortAndClean(run.error!, what);
  }
});

test('a 300-character path component or a 5,000-character path is INVALID_ARGUMENT naming the limit, with no host path', async () => {
  for (const [path, pattern] of [
    [`${'n'.repeat(300)}/file`, /a name in it is longer than 255 bytes/],
    ['a/'.repeat(2500), /longer than 4096 bytes/],
  ] as const) {
    for (const toolName of ['fs.read', 'fs.write', 'fs.list']) {
      const run = await runTaskWithin(
        worker.tasks,
        { sessionId, toolName, arguments: { path, ...(toolName === 'fs.write' ? { contents: 'x' } : {}) } },
        20_000,
      );
      assert.equal(run.code, Status.INVALID_ARGUMENT, `${toolName}: ${Status[run.code]} ${run.error?.details.slice(0, 300)}`);
      assert.match(run.error!.details, pattern);
      assertShortAndClean(run.error!, toolName);
    }
  }
});

test('fs.write contents that are not UTF-8 are written as they always were: each bad sequence a U+FFFD, a BOM kept, small or large', async () => {
  // A client that sends the request's bytes as given (nice-grpc's would encode strings).
  const raw = TaskExecutionDefinition.methods.executeTask;
  const definition = {
    ...TaskExecutionDefinition,
    methods: {
      ...TaskExecutionDefinition.methods,
      executeTask: {
        ...raw,
        requestType: { ...raw.requestType, fromPartial: (bytes: never) => bytes, encode: (bytes: Uint8Array) => ({ finish: () => bytes }) },
      },
    },
  } as unknown as typeof TaskExecutionDefinition;
  const channel = createChannel(worker.address);
  const tasks = createClient(definition, channel, { '*': { deadline: CALL.deadline } } as never);
  const field = (w: BinaryWriter, no: number, bytes: Uint8Array) => w.uint32((no << 3) | 2).bytes(bytes);
  const entry = (w: BinaryWriter, key: string, value: Uint8Array) =>
    w.uint32((4 << 3) | 2).bytes(field(field(new BinaryWriter(), 1, Buffer.from(key)), 2, value).finish());
  try {
    for (const filler of [10, 3 << 20]) {
      const contents = Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.alloc(filler, 'z'),
        Buffer.from([0xc3, 0x28, 0xed, 0xa0, 0x80, 0xff, 0xe2, 0x82]),
      ]);
      const w = field(field(new BinaryWriter(), 2, Buffer.from(sessionId)), 3, Buffer.from('fs.write'));
      entry(w, 'path', Buffer.from(`bad-${filler}.txt`));
      entry(w, 'contents', contents);
      let result: TaskResponse['payload'] | undefined;
      for await (const reply of tasks.executeTask(w.finish() as never)) result = reply.payload;
      const expected = Buffer.from(new TextDecoder('utf-8', { ignoreBOM: true }).decode(contents), 'utf8');
      assert.equal(result?.$case === 'result' && result.value.outputs.bytes_written, String(expected.length), `${filler}: bytes_written`);
      const read = await runTool(worker.tasks, sessionId, 'fs.read', { path: `bad-${filler}.txt`, encoding: 'base64' });
      assert.ok(Buffer.from(read.contents!, 'base64').equals(expected), `${filler}: the file holds the replaced text`);
    }
  } finally {
    channel.close();
  }
});

test('size_bytes = 2^62 is INVALID_ARGUMENT, not INTERNAL', async () => {
  const upload = await failure(worker.artifacts.getUploadURL({ sessionId, artifactName: 'a', contentType: 'text/plain', sizeBytes: 2 ** 62 }, CALL));
  assert.equal(upload.code, Status.INVALID_ARGUMENT, upload.details);
  const record = await failure(
    worker.artifacts.recordArtifact(
      {
        artifactId: 'artifact-xxxxxxxxxxxxxxxxxxxx',
        sessionId,
        artifactName: 'a',
        artifactType: 'x',
        sizeBytes: 2 ** 62,
        checksumSha256: '0'.repeat(64),
        metadata: {},
      },
      CALL,
    ),
  );
  assert.equal(record.code, Status.INVALID_ARGUMENT, record.details);
});

function put(url: string, body: Buffer, contentType: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'PUT', headers: { 'content-type': contentType, 'content-length': body.length }, timeout: 20_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 20 s')));
    req.on('error', reject);
    req.end(body);
  });
}

test('an upload URL cannot be re-split into another grant, and content_type must be a bounded media type', async () => {
  // The old signing joined fields with newlines: a 10-byte grant of type "5000000\nx/y" was also a 5 MB grant of type "x/y".
  const forged = await failure(worker.artifacts.getUploadURL({ sessionId, artifactName: 'a', contentType: '5000000\nx/y', sizeBytes: 10 }, CALL));
  assert.equal(forged.code, Status.INVALID_ARGUMENT);
  assert.match(forged.details, /content_type .* is not a media type/);
  const long = await failure(worker.artifacts.getUploadURL({ sessionId, artifactName: 'a', contentType: `text/${'x'.repeat(20_000)}`, sizeBytes: 10 }, CALL));
  assert.equal(long.code, Status.INVALID_ARGUMENT);
  assertShortAndClean(long, 'content_type');

  // A real grant, its fields moved between parameters: refused.
  const grant = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'a', contentType: 'text/plain', sizeBytes: 10 }, CALL);
  const url = new URL(grant.uploadUrl);
  url.searchParams.set('size', '5000000');
  url.searchParams.set('type', 'text/plain');
  assert.equal(await put(url.href, Buffer.alloc(1_000_000, 1), 'text/plain'), 403);
  assert.equal(await put(grant.uploadUrl, Buffer.alloc(11, 1), 'text/plain'), 413);
  assert.equal(await put(grant.uploadUrl, Buffer.alloc(10, 1), 'text/plain'), 200);
});

test('two simultaneous PUTs to one URL: exactly one 200, the other 409; the record matches the stored bytes; nothing left in .incoming', async () => {
  const size = 2 * 1024 * 1024;
  for (let round = 0; round < 5; round++) {
    const grant = await worker.artifacts.getUploadURL(
      { sessionId, artifactName: `race-${round}.bin`, contentType: 'application/octet-stream', sizeBytes: size },
      CALL,
    );
    const bodies = [Buffer.alloc(size, 0x41), Buffer.alloc(size, 0x42)];
    const statuses = await Promise.all(bodies.map((b) => put(grant.uploadUrl, b, 'application/octet-stream')));
    assert.deepEqual([...statuses].sort(), [200, 409], `round ${round}: ${statuses}`);
    const winner = bodies[statuses.indexOf(200)]!;
    const loser = bodies[statuses.indexOf(409)]!;
    const checksum = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const wrong = await failure(
      worker.artifacts.recordArtifact(
        {
          artifactId: grant.artifactId,
          sessionId,
          artifactName: `race-${round}.bin`,
          artifactType: 'bin',
          sizeBytes: size,
          checksumSha256: checksum(loser),
          metadata: {},
        },
        CALL,
      ),
    );
    assert.equal(wrong.code, Status.INVALID_ARGUMENT);
    await worker.artifacts.recordArtifact(
      {
        artifactId: grant.artifactId,
        sessionId,
        artifactName: `race-${round}.bin`,
        artifactType: 'bin',
        sizeBytes: size,
        checksumSha256: checksum(winner),
        metadata: {},
      },
      CALL,
    );
  }
  assert.deepEqual(readdirSync(join(worker.dataDir, 'artifacts', '.incoming')), []);
});

test('RecordArtifact retried with the same metadata in another order is OK (maps compared as maps)', async () => {
  const grant = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'm.txt', contentType: 'text/plain', sizeBytes: 3 }, CALL);
  assert.equal(await put(grant.uploadUrl, Buffer.from('abc'), 'text/plain'), 200);
  const facts = {
    artifactId: grant.artifactId,
    sessionId,
    artifactName: 'm.txt',
    artifactType: 'text',
    sizeBytes: 3,
    checksumSha256: createHash('sha256').update('abc').digest('hex'),
  };
  const first = await worker.artifacts.recordArtifact({ ...facts, metadata: { a: '1', b: '2', c: '3' } }, CALL);
  const again = await worker.artifacts.recordArtifact({ ...facts, metadata: { c: '3', a: '1', b: '2' } }, CALL);
  assert.equal(again.storageUrl !== '', true);
  assert.equal(again.artifactId, first.artifactId);
  const other = await failure(worker.artifacts.recordArtifact({ ...facts, metadata: { a: '1', b: '2', c: '4' } }, CALL));
  assert.equal(other.code, Status.ALREADY_EXISTS);
});

test('a damaged checkpoint record or a missing archive answers with its cause and a tabled code; nothing is half-restored', async () => {
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'kept.txt', contents: 'kept' });
  const damaged = (await worker.sessions.checkpointSession({ sessionId }, CALL)).checkpointId;
  const missing = (await worker.sessions.checkpointSession({ sessionId }, CALL)).checkpointId;
  const parent = (await worker.sessions.checkpointSession({ sessionId }, CALL)).checkpointId;
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'later.txt', contents: 'later' });
  const child = (await worker.sessions.checkpointSession({ sessionId, incremental: true }, CALL)).checkpointId;
  const store = join(worker.dataDir, 'checkpoints');
  writeFileSync(join(store, `${damaged}.json`), '{ not json');
  rmSync(join(store, `${missing}.zip`));
  rmSync(join(store, `${parent}.json`));
  const before = (await worker.sessions.getCapacity({}, CALL)).activeSessions;

  const cases: [string, Status, RegExp][] = [
    [damaged, Status.INTERNAL, /record is damaged \(it is not valid JSON\)/],
    [missing, Status.NOT_FOUND, /archive is missing from the checkpoint store/],
    [child, Status.NOT_FOUND, new RegExp(`its parent "${parent}" is no longer in the checkpoint store`)],
  ];
  for (const [checkpointId, code, pattern] of cases) {
    const err = await failure(worker.sessions.restoreSession({ checkpointId }, CALL));
    assert.equal(err.code, code, `${checkpointId}: ${Status[err.code]} ${err.details}`);
    assert.match(err.details, pattern);
    assert.ok(err.details.includes(checkpointId === child ? child : checkpointId), 'the message names the checkpoint');
    assertShortAndClean(err, checkpointId);
  }
  assert.equal((await worker.sessions.getCapacity({}, CALL)).activeSessions, before, 'no session was left half-restored');
});

function startAlone(args: string[]): { status: number | null; stderr: string; ms: number } {
  const started = Date.now();
  const run = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, WORKER_LOG_LEVEL: 'error' } });
  return { status: run.status, stderr: run.stderr, ms: Date.now() - started };
}

test('start-up errors: one line naming the setting and the cause, exit non-zero, never a hang', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as { port: number }).port;
  const dataDir = join(tmpdir(), `codegen-startup-errors-${process.pid}`);
  const readOnly = join(tmpdir(), `codegen-startup-ro-${process.pid}`);
  mkdirSync(readOnly, { recursive: true });
  spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'codegen-test-ro', readOnly]);
  try {
    const cases: [string, string[], RegExp][] = [
      [
        'busy gRPC port',
        ['--grpc-addr', `127.0.0.1:${port}`, '--http-addr', '127.0.0.1:0', '--data-dir', dataDir],
        new RegExp(`^codegen-mcp-worker: WORKER_GRPC_ADDR 127\\.0\\.0\\.1:${port} is already in use`),
      ],
      [
        'busy HTTP port',
        ['--grpc-addr', '127.0.0.1:0', '--http-addr', `127.0.0.1:${port}`, '--data-dir', dataDir],
        new RegExp(`^codegen-mcp-worker: WORKER_HTTP_ADDR 127\\.0\\.0\\.1:${port} is already in use`),
      ],
      [
        'read-only data dir',
        ['--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--data-dir', join(readOnly, 'data')],
        /^codegen-mcp-worker: WORKER_DATA_DIR .* is on a read-only filesystem/,
      ],
      [
        'data dir under /proc',
        ['--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--data-dir', '/proc/nope'],
        /^codegen-mcp-worker: WORKER_DATA_DIR \/proc\/nope cannot be created/,
      ],
    ];
    for (const [what, args, pattern] of cases) {
      const run = startAlone(args);
      assert.notEqual(run.status, 0, `${what}: exit ${run.status}`);
      assert.notEqual(run.status, null, `${what}: did not exit within 30 s`);
      assert.equal(run.stderr.trim().split('\n').length, 1, `${what}: one line, got ${JSON.stringify(run.stderr)}`);
      assert.match(run.stderr, pattern, what);
      assert.doesNotMatch(run.stderr, /\n\s+at |Error:/, `${what}: no stack trace`);
    }
  } finally {
    busy.close();
    spawnSync('umount', ['-l', readOnly]);
    rmSync(readOnly, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
});
