// end-to-end: alone (it measures time or looks at the whole host: tests/end-to-end-tier.sh)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { after, before, test } from 'node:test';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { Status } from 'nice-grpc';
import { ArtifactMetadata, UploadURLRequest } from '../gen/codegen/v1/artifact_service.js';
import {
  CapacityRequest,
  CheckpointRequest,
  CreateSessionRequest,
  DestroySessionRequest,
  RestoreRequest,
  SessionStatusRequest,
} from '../gen/codegen/v1/session_management.js';
import { CancelRequest, StatusRequest, TaskRequest } from '../gen/codegen/v1/task_execution.js';
import { runTool } from './helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from './helpers/worker.js';

/**
 * Property-based fuzzing of every RPC of the three services and of the HTTP endpoint: generated
 * requests (huge, empty, control-character and path-like strings, extreme numbers, random maps)
 * and the same requests mutated at the byte level (non-UTF-8 strings, broken varints, unknown
 * fields), sent raw. Each answer must carry a status decisions.md names for that RPC, a message
 * of at most 1 KiB without a host path or a stack trace, and come within a bound. Afterwards the
 * worker serves and has leaked nothing. Replay a failure with FUZZ_SEED=<seed printed below>.
 */

const SEED = Number(process.env.FUZZ_SEED ?? randomBytes(4).readUInt32BE(0));
const GRPC_RUNS = 2000;
const HTTP_RUNS = 500;
const ANSWER_MS = 15_000;

let worker: RunningWorker;
let raw: Client;
let sessionId: string;
let httpPort: number;
let uploadUrl: string;
const taskIds: string[] = [];
const checkpointIds: string[] = [];

before(async () => {
  console.log(`fuzz seed: ${SEED} (replay with FUZZ_SEED=${SEED})`);
  worker = await startWorker({
    env: {
      WORKER_MAX_SESSIONS: '6',
      WORKER_SPARE_SESSIONS: '2',
      WORKER_MAX_TASK_TIMEOUT_SECONDS: '3',
      WORKER_PIP_INDEX_URL: 'http://127.0.0.1:9/simple',
      WORKER_LOG_LEVEL: 'info',
    },
  });
  raw = new Client(worker.address, credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  sessionId = (await worker.sessions.createSession({ workspaceId: 'fuzz' })).sessionId;
  await runTool(worker.tasks, sessionId, 'fs.write', { path: 'file.txt', contents: 'fuzz' });
  checkpointIds.push((await worker.sessions.checkpointSession({ sessionId })).checkpointId);
  const grant = await worker.artifacts.getUploadURL({ sessionId, artifactName: 'a.bin', contentType: 'application/octet-stream', sizeBytes: 16 });
  uploadUrl = grant.uploadUrl;
  httpPort = Number(new URL(uploadUrl).port);
});

after(async () => {
  raw?.close();
  await stopHard(worker);
});

// ---- what may be sent -----------------------------------------------------------------------

const controlChars = fc.string({ unit: fc.integer({ min: 0, max: 31 }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const huge = fc.integer({ min: 1_000, max: 200_000 }).map((n) => 'x'.repeat(n));
const pathLike = fc.constantFrom(
  '',
  '.',
  '..',
  '../x',
  '/etc/passwd',
  'a/../../b',
  'a\0b',
  `${'n'.repeat(300)}/x`,
  'a/'.repeat(3000),
  'file.txt',
  'dir/',
  '/workspace/file.txt',
  '~',
  '\\\\server\\share',
);

/** Strings: mostly small, some known ids, some hostile. */
function text(known: () => string[] = () => []): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.string({ maxLength: 30 }), weight: 4 },
    { arbitrary: fc.constant(''), weight: 2 },
    { arbitrary: fc.nat().map((i) => known()[i % Math.max(known().length, 1)] ?? ''), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }), weight: 1 },
    { arbitrary: controlChars, weight: 1 },
    { arbitrary: pathLike, weight: 1 },
    { arbitrary: huge, weight: 1 },
  );
}

const int32 = fc.oneof(fc.integer({ min: -5, max: 200 }), fc.constantFrom(-(2 ** 31), 2 ** 31 - 1, -1, 0, 1_000_000));
const int64 = fc.oneof(fc.integer({ min: -5, max: 5_000_000 }), fc.constantFrom(2 ** 62, -(2 ** 62), Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 1e18, -1, 0));
const stringMap = fc.oneof(
  { arbitrary: fc.dictionary(text(), text(), { maxKeys: 8 }), weight: 6 },
  { arbitrary: fc.integer({ min: 1_000, max: 12_000 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']))), weight: 1 },
);

const TOOLS = ['echo', 'fs.write', 'fs.read', 'fs.list', 'run.python', 'pkg.install'];
const ARGUMENT_NAMES = ['path', 'contents', 'encoding', 'code', 'requirements', 'message'];
const toolArguments = fc.oneof(
  fc.dictionary(
    fc.constantFrom(...ARGUMENT_NAMES),
    fc.oneof(text(), fc.constantFrom('utf-8', 'base64', 'print(1)', 'import os\nprint(os.getcwd())', 'tinydep', '-r x')),
    { maxKeys: 4 },
  ),
  stringMap,
);

interface Rpc {
  path: string;
  streaming: boolean;
  /** Status codes decisions.md names for this RPC. */
  allowed: Status[];
  encode: (value: never) => Uint8Array;
  request: fc.Arbitrary<object>;
}

const S = Status;
const common = [S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND];
const sid = () => [sessionId];
const RPCS: Rpc[] = [
  {
    path: '/codegen.v1.SessionManagement/CreateSession',
    streaming: false,
    allowed: [S.OK, S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED],
    encode: (v) => CreateSessionRequest.encode(CreateSessionRequest.fromPartial(v)).finish(),
    request: fc.record({
      workspaceId: text(),
      userId: text(),
      config: fc.option(
        fc.record({
          language: fc.oneof(text(), fc.constantFrom('python', 'node', 'go')),
          limits: fc.option(fc.record({ maxMemoryMb: int32, maxCpuPercent: int32, maxDiskMb: fc.integer({ min: -1, max: 64 }), timeoutSeconds: int32 }), {
            nil: undefined,
          }),
          env: stringMap,
        }),
        { nil: undefined },
      ),
    }),
  },
  {
    path: '/codegen.v1.SessionManagement/DestroySession',
    streaming: false,
    allowed: [...common, S.FAILED_PRECONDITION],
    encode: (v) => DestroySessionRequest.encode(DestroySessionRequest.fromPartial(v)).finish(),
    request: fc.record({ sessionId: text(), createCheckpoint: fc.boolean() }),
  },
  {
    path: '/codegen.v1.SessionManagement/GetSessionStatus',
    streaming: false,
    allowed: common,
    encode: (v) => SessionStatusRequest.encode(SessionStatusRequest.fromPartial(v)).finish(),
    request: fc.record({ sessionId: text(sid) }),
  },
  {
    path: '/codegen.v1.SessionManagement/CheckpointSession',
    streaming: false,
    allowed: [...common, S.FAILED_PRECONDITION, S.RESOURCE_EXHAUSTED],
    encode: (v) => CheckpointRequest.encode(CheckpointRequest.fromPartial(v)).finish(),
    request: fc.record({ sessionId: text(sid), incremental: fc.boolean() }),
  },
  {
    path: '/codegen.v1.SessionManagement/RestoreSession',
    streaming: false,
    allowed: [...common, S.RESOURCE_EXHAUSTED],
    encode: (v) => RestoreRequest.encode(RestoreRequest.fromPartial(v)).finish(),
    request: fc.record({ checkpointId: text(() => checkpointIds) }),
  },
  {
    path: '/codegen.v1.SessionManagement/GetCapacity',
    streaming: false,
    allowed: [S.OK, S.INVALID_ARGUMENT],
    encode: (v) => CapacityRequest.encode(CapacityRequest.fromPartial(v)).finish(),
    request: fc.constant({}),
  },
  {
    path: '/codegen.v1.TaskExecution/ExecuteTask',
    streaming: true,
    // INTERNAL only where decisions.md has it: pkg.install failing.
    allowed: [...common, S.PERMISSION_DENIED, S.FAILED_PRECONDITION, S.ALREADY_EXISTS, S.RESOURCE_EXHAUSTED, S.DEADLINE_EXCEEDED, S.CANCELLED, S.INTERNAL],
    encode: (v) => TaskRequest.encode(TaskRequest.fromPartial(v)).finish(),
    request: fc.record({
      taskId: fc.oneof(
        fc.constant(''),
        text(() => taskIds),
      ),
      sessionId: text(sid),
      toolName: fc.oneof({ arbitrary: fc.constantFrom(...TOOLS), weight: 5 }, { arbitrary: text(), weight: 1 }),
      arguments: toolArguments,
      constraints: fc.option(fc.record({ timeoutSeconds: fc.integer({ min: -1, max: 3 }), maxMemoryMb: int32, maxCpuPercent: int32 }), { nil: undefined }),
    }),
  },
  {
    path: '/codegen.v1.TaskExecution/CancelTask',
    streaming: false,
    allowed: common,
    encode: (v) => CancelRequest.encode(CancelRequest.fromPartial(v)).finish(),
    request: fc.record({ taskId: text(() => taskIds), sessionId: text(sid) }),
  },
  {
    path: '/codegen.v1.TaskExecution/GetTaskStatus',
    streaming: false,
    allowed: common,
    encode: (v) => StatusRequest.encode(StatusRequest.fromPartial(v)).finish(),
    request: fc.record({ taskId: text(() => taskIds), sessionId: text(sid) }),
  },
  {
    path: '/codegen.v1.ArtifactService/GetUploadURL',
    streaming: false,
    allowed: common,
    encode: (v) => UploadURLRequest.encode(UploadURLRequest.fromPartial(v)).finish(),
    request: fc.record({
      sessionId: text(sid),
      artifactName: text(),
      contentType: fc.oneof(text(), fc.constantFrom('text/plain', 'a/b; c="d"', '5000000\nx/y')),
      sizeBytes: int64,
    }),
  },
  {
    path: '/codegen.v1.ArtifactService/RecordArtifact',
    streaming: false,
    allowed: [...common, S.ALREADY_EXISTS],
    encode: (v) => ArtifactMetadata.encode(ArtifactMetadata.fromPartial(v)).finish(),
    request: fc.record({
      artifactId: text(),
      sessionId: text(sid),
      artifactName: text(),
      artifactType: text(),
      sizeBytes: int64,
      checksumSha256: fc.oneof(text(), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 })),
      metadata: stringMap,
    }),
  },
];

/** Byte-level damage to an encoded request. */
const mutation = fc.oneof(
  fc.constant((b: Uint8Array) => b),
  fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }).map(({ at, byte }) => (b: Uint8Array) => {
    const copy = Buffer.from(b);
    if (copy.length > 0) copy[at % copy.length] = byte;
    return copy;
  }),
  fc.uint8Array({ maxLength: 64 }).map((junk) => (b: Uint8Array) => Buffer.concat([b, junk])),
  fc.nat().map((n) => (b: Uint8Array) => b.subarray(0, b.length === 0 ? 0 : n % b.length)),
  fc.uint8Array({ maxLength: 200 }).map((junk) => () => junk),
  // a string field (number 1) holding bytes that are not UTF-8
  fc.constant(() => Buffer.from([0x0a, 0x04, 0xff, 0xfe, 0xc3, 0x28])),
);

// ---- sending and judging --------------------------------------------------------------------

interface Answer {
  code: Status;
  details: string;
  ms: number;
}

function send(rpc: Rpc, bytes: Uint8Array): Promise<Answer> {
  const started = Date.now();
  const deadline = new Date(started + ANSWER_MS);
  const identity = (b: Buffer) => b;
  return new Promise((resolve) => {
    const done = (err: ServiceError | null) => resolve({ code: err ? err.code : Status.OK, details: err?.details ?? '', ms: Date.now() - started });
    if (!rpc.streaming) {
      raw.makeUnaryRequest(rpc.path, identity, identity, Buffer.from(bytes), new Metadata(), { deadline }, (err) => done(err));
      return;
    }
    const call = raw.makeServerStreamRequest(rpc.path, identity, identity, Buffer.from(bytes), new Metadata(), { deadline });
    call.on('data', () => undefined);
    call.on('error', (err: ServiceError) => done(err));
    call.on('end', () => done(null));
  });
}

/** What no answer may show: the worker's own paths, descriptor paths, interpreter paths, stack frames. */
function leaksHost(text: string): boolean {
  const literal = [process.cwd(), worker.dataDir, '/proc/self/fd', 'node:internal', 'codegen-worker-test-', '.pyenv/', 'site-packages/'];
  return literal.some((p) => text.includes(p)) || /\n\s+at /.test(text);
}

function judge(rpc: Rpc, answer: Answer, what: string): void {
  try {
    judgeStrictly(rpc, answer, what);
  } catch (err) {
    // The runner shortens a property's failure; the assertion itself goes to stderr whole.
    process.stderr.write(`fuzz failure: ${(err as Error).message}\n`);
    throw err;
  }
}

function judgeStrictly(rpc: Rpc, answer: Answer, what: string): void {
  assert.ok(answer.ms < ANSWER_MS, `${rpc.path} did not answer within ${ANSWER_MS} ms (${what})`);
  assert.ok(rpc.allowed.includes(answer.code), `${rpc.path} answered ${Status[answer.code]} ${answer.details.slice(0, 300)} (${what})`);
  assert.ok(Buffer.byteLength(answer.details) <= 1024, `${rpc.path}: a ${Buffer.byteLength(answer.details)}-byte message (${what})`);
  assert.ok(!leaksHost(answer.details), `${rpc.path}: the message names a host path or a stack: ${answer.details.slice(0, 300)} (${what})`);
}

/** Sessions the fuzzer made are destroyed now and then, so capacity stays for the rest. */
async function keepCapacity(): Promise<void> {
  const capacity = await worker.sessions.getCapacity({});
  if (capacity.availableSessions > 2) return;
  for (const s of capacity.sessions) if (s.sessionId !== sessionId) await worker.sessions.destroySession({ sessionId: s.sessionId }).catch(() => undefined);
}

test(`${GRPC_RUNS} generated and mutated requests to every RPC answer as decisions.md says`, async () => {
  let sent = 0;
  // Counterexamples name the RPC by its index, not by the (large) arbitrary behind it.
  const call = fc.oneof(...RPCS.map((rpc, index) => rpc.request.map((value) => ({ rpc: index, value }))));
  await fc.assert(
    fc.asyncProperty(call, mutation, async ({ rpc: index, value }, mutate) => {
      const rpc = RPCS[index]!;
      const bytes = mutate(rpc.encode(value as never));
      if ((value as { taskId?: string }).taskId) taskIds.push((value as { taskId: string }).taskId);
      const answer = await send(rpc, bytes);
      sent++;
      judge(rpc, answer, `request ${JSON.stringify(value).slice(0, 200)}, ${bytes.length} bytes`);
      if (sent % 50 === 0) await keepCapacity();
    }),
    { seed: SEED, numRuns: GRPC_RUNS, endOnFailure: true },
  );
  assert.ok(sent >= GRPC_RUNS);
});

function httpCall(method: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; ms: number; text: string }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: httpPort, method, path, headers, timeout: ANSWER_MS }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString('latin1').slice(0, 4096)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Date.now() - started, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => (err.message === 'timeout' ? reject(err) : resolve({ status: 0, ms: Date.now() - started, text: err.message })));
    req.end(body);
  });
}

test(`${HTTP_RUNS} generated requests to the HTTP endpoint never get a 5xx and never hang`, async () => {
  const real = new URL(uploadUrl);
  const paramNames = ['session', 'size', 'type', 'expires', 'signature'];
  const query = fc.oneof(
    fc.constant(real.search),
    fc
      .record({
        name: fc.constantFrom(...paramNames),
        value: fc.oneof(fc.string({ maxLength: 40 }), controlChars, fc.constantFrom('-1', '1e309', 'NaN', '99999999999999999999')),
      })
      .map(({ name, value }) => {
        const url = new URL(real.href);
        url.searchParams.set(name, value);
        return url.search;
      }),
    fc.string({ maxLength: 200 }).map((q) => `?${encodeURI(q)}`),
  );
  const path = fc.oneof(
    fc.constant(real.pathname),
    fc.constantFrom('/', '/artifacts/', '/artifacts/x', `/artifacts/${'a'.repeat(5000)}`, '/../../etc/passwd', '/artifacts/artifact-%00'),
    fc.string({ maxLength: 50 }).map((p) => `/${encodeURIComponent(p)}`),
  );
  let sent = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS'),
      path,
      query,
      fc.uint8Array({ maxLength: 64 }),
      fc.constantFrom('', 'application/octet-stream', 'text/plain'),
      async (method, p, q, body, type) => {
        const headers: Record<string, string> = type ? { 'content-type': type } : {};
        const answer = await httpCall(method, `${p}${q}`, headers, Buffer.from(body));
        sent++;
        const what = `${method} ${p.slice(0, 100)}${q.slice(0, 200)}`;
        if (answer.ms >= ANSWER_MS || !(answer.status > 0 && answer.status < 500) || leaksHost(answer.text))
          process.stderr.write(`fuzz failure: ${what} answered ${answer.status} in ${answer.ms} ms: ${answer.text.slice(0, 200)}\n`);
        assert.ok(answer.ms < ANSWER_MS, `${what} took ${answer.ms} ms`);
        assert.ok(answer.status > 0 && answer.status < 500, `${what} answered ${answer.status} ${answer.text.slice(0, 200)}`);
        assert.ok(!leaksHost(answer.text), `${what}: the answer names a host path: ${answer.text.slice(0, 200)}`);
      },
    ),
    { seed: SEED, numRuns: HTTP_RUNS, endOnFailure: true },
  );
  assert.ok(sent >= HTTP_RUNS);
});

test('after the fuzzing the worker serves, and nothing leaked: processes, mounts, cgroups, temporary files', async () => {
  assert.equal(worker.process.exitCode, null, 'the worker still runs');
  const check = (await worker.sessions.createSession({ workspaceId: 'after-fuzz' })).sessionId;
  assert.equal((await runTool(worker.tasks, check, 'run.python', { code: 'print(6*7)' })).stdout, '42\n');
  for (const s of (await worker.sessions.getCapacity({})).sessions) await worker.sessions.destroySession({ sessionId: s.sessionId });

  // Session processes: none with a uid of this worker's range but its spare sessions' (none run code).
  const range = /^(\d+)-(\d+)/.exec(String(worker.logs.find((l) => l.message === 'sandbox ready')?.session_uids ?? ''));
  assert.ok(range, 'the sandbox ready line names the uid range');
  const [first, last] = [Number(range[1]), Number(range[2])];
  const leftovers = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      let status = '';
      try {
        status = readFileSync(`/proc/${p}/status`, 'utf8');
      } catch {
        // gone
      }
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
      return uid >= first - 1 && uid <= last;
    });
  assert.deepEqual(leftovers, [], 'no process of a session is left');

  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(worker.dataDir) && !l.includes('/sessions/.spare-') && !l.includes(`${worker.dataDir}/caches `));
  assert.deepEqual(mounts, [], "no mount is left under the data directory (but the spare sessions' disks and the package caches')");

  // The worker's cgroup subtree (v1: one per controller, under the worker's own group) holds only spare sessions' groups.
  const own = new Map(
    readFileSync(`/proc/${worker.process.pid}/cgroup`, 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .flatMap(([, controllers, path]) => (controllers ?? '').split(',').map((c) => [c, path ?? '/'] as const)),
  );
  const groups = ['memory', 'pids'].flatMap((c) => {
    try {
      const dir = `/sys/fs/cgroup/${c}${own.get(c) === '/' ? '' : own.get(c)}/codegen-${worker.process.pid}`;
      return readdirSync(dir, { withFileTypes: true })
        .filter((g) => g.isDirectory() && !g.name.startsWith('spare-'))
        .map((g) => `${c}/${g.name}`);
    } catch {
      return [];
    }
  });
  assert.deepEqual(groups, [], 'no session or task cgroup is left');

  const listing = (dir: string): string[] => {
    try {
      return readdirSync(`${worker.dataDir}/${dir}`);
    } catch {
      return []; // never made: nothing in it
    }
  };
  for (const dir of ['checkpoints/.incoming', 'artifacts/.incoming']) assert.deepEqual(listing(dir), [], `${dir} is empty`);
  // Scratch keeps only the disk templates (a cache, one per size a session asked for, bounded) and the sessions' resolv.conf.
  assert.deepEqual(
    listing('scratch').filter((n) => n !== 'disk-templates' && n !== 'network'),
    [],
    'scratch holds only the disk templates and network/',
  );
  const templates = listing('scratch/disk-templates');
  assert.ok(templates.length <= 8 && templates.every((n) => /^ext4-\d+mb\.img$/.test(n)), `disk templates: ${templates.join(', ')}`);
  const sessions = readdirSync(`${worker.dataDir}/sessions`).filter((n) => !n.startsWith('.spare-'));
  assert.deepEqual(sessions, [], 'no session directory is left');
});
