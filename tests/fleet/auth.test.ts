import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { Status } from 'nice-grpc';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// WORKER_AUTH_TOKEN: every method of the three services (and reflection) refuses a call
// without the token or with a wrong one, UNAUTHENTICATED and nothing more; health is exempt.

const TOKEN = 'fleet-token-7c1f';
const MAIN = new URL('../../src/main.js', import.meta.url).pathname;
let worker: RunningWorker;
let raw: Client;

const METHODS = [
  ['/codegen.v1.SessionManagement/CreateSession', false],
  ['/codegen.v1.SessionManagement/DestroySession', false],
  ['/codegen.v1.SessionManagement/GetSessionStatus', false],
  ['/codegen.v1.SessionManagement/CheckpointSession', false],
  ['/codegen.v1.SessionManagement/RestoreSession', false],
  ['/codegen.v1.SessionManagement/GetCapacity', false],
  ['/codegen.v1.TaskExecution/ExecuteTask', true],
  ['/codegen.v1.TaskExecution/CancelTask', false],
  ['/codegen.v1.TaskExecution/GetTaskStatus', false],
  ['/codegen.v1.ArtifactService/GetUploadURL', false],
  ['/codegen.v1.ArtifactService/RecordArtifact', false],
] as const;

before(async () => {
  worker = await startWorker({ env: { WORKER_AUTH_TOKEN: TOKEN }, client: { token: TOKEN } });
  raw = new Client(worker.address, credentials.createInsecure());
});

after(async () => {
  raw?.close();
  await worker?.stop();
});

/** Calls a method with an empty request and the given authorization header; resolves its status. */
function call(path: string, streaming: boolean, authorization: string | undefined): Promise<{ code: Status; details: string }> {
  const metadata = new Metadata();
  if (authorization !== undefined) metadata.set('authorization', authorization);
  const identity = (b: Buffer) => b;
  const deadline = new Date(Date.now() + 10_000);
  return new Promise((resolve) => {
    const done = (err: ServiceError | null) => resolve({ code: err?.code ?? Status.OK, details: err?.details ?? '' });
    if (!streaming) {
      raw.makeUnaryRequest(path, identity, identity, Buffer.alloc(0), metadata, { deadline }, (err) => done(err));
      return;
    }
    const stream = raw.makeServerStreamRequest(path, identity, identity, Buffer.alloc(0), metadata, { deadline });
    stream.on('data', () => undefined);
    stream.on('error', (err: ServiceError) => done(err));
    stream.on('end', () => done(null));
  });
}

test('every method refuses a missing or wrong token with UNAUTHENTICATED, and takes the right one', async () => {
  for (const [path, streaming] of METHODS) {
    for (const [what, header] of [
      ['missing', undefined],
      ['wrong', `Bearer ${TOKEN}x`],
      ['not bearer', TOKEN],
      ['empty bearer', 'Bearer '],
    ] as const) {
      const answer = await call(path, streaming, header);
      assert.equal(answer.code, Status.UNAUTHENTICATED, `${path} with a ${what} token: ${Status[answer.code]} ${answer.details}`);
      assert.equal(answer.details, 'missing or invalid credentials');
    }
    const right = await call(path, streaming, `Bearer ${TOKEN}`);
    assert.notEqual(right.code, Status.UNAUTHENTICATED, `${path} with the right token`);
  }
  // Reflection is guarded too.
  const reflection = await new Promise<Status>((resolve) => {
    const stream = raw.makeBidiStreamRequest(
      '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
      (b: Buffer) => b,
      (b: Buffer) => b,
      new Metadata(),
      { deadline: new Date(Date.now() + 10_000) },
    );
    stream.on('data', () => resolve(Status.OK));
    stream.on('error', (err: ServiceError) => resolve(err.code));
    stream.end(Buffer.from([0x3a, 0x01, 0x2a]));
  });
  assert.equal(reflection, Status.UNAUTHENTICATED);
});

test('the CLI takes the token as --token or WORKER_AUTH_TOKEN', () => {
  const cli = new URL('../../src/cli.js', import.meta.url).pathname;
  const run = (args: string[], env: Record<string, string>) =>
    spawnSync(process.execPath, [cli, '--address', worker.address, '--json', ...args], {
      env: { ...process.env, WORKER_AUTH_TOKEN: '', ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
  assert.equal(run(['capacity'], { WORKER_AUTH_TOKEN: TOKEN }).status, 0);
  const flag = spawnSync(process.execPath, [cli, '--address', worker.address, '--token', TOKEN, 'capacity'], {
    env: { ...process.env, WORKER_AUTH_TOKEN: '' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(flag.status, 0, flag.stderr);
  const without = run(['capacity'], {});
  assert.notEqual(without.status, 0);
  assert.match(without.stderr, /UNAUTHENTICATED|missing or invalid credentials/);
  assert.match(without.stderr, /pass --token or set WORKER_AUTH_TOKEN/, 'the fix is named');
  assert.match(run(['capacity'], { WORKER_AUTH_TOKEN: 'wrong' }).stderr, /the one given is not it/);
});

test('the typed client sends its token; health checks need none', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'auth' });
  assert.match(sessionId, /^session-/);
  const health = await new Promise<Buffer>((resolve, reject) =>
    raw.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      new Metadata(),
      { deadline: new Date(Date.now() + 5000) },
      (err, value) => (err ? reject(err) : resolve(value!)),
    ),
  );
  assert.deepEqual([...health], [0x08, 0x01], 'SERVING');
});

test('listening off loopback with neither a token nor mTLS refuses to start, unless WORKER_INSECURE says so', async () => {
  const refused = spawnSync(process.execPath, [MAIN, '--grpc-addr', '0.0.0.0:0', '--http-addr', '127.0.0.1:0', '--data-dir', '/tmp/codegen-insecure-check'], {
    env: { ...process.env, WORKER_AUTH_TOKEN: '' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /WORKER_GRPC_ADDR 0\.0\.0\.0:0 is not a loopback address.*WORKER_AUTH_TOKEN.*WORKER_INSECURE=true/s);
  assert.equal(refused.stderr.trim().split('\n').length, 1);

  const insecure = await startWorker({ args: ['--grpc-addr', '0.0.0.0:0'], env: { WORKER_INSECURE: 'true', WORKER_SPARE_SESSIONS: '0' } });
  try {
    assert.ok(
      insecure.logs.some((l) => l.level === 'warn' && String(l.message).startsWith('WORKER_INSECURE=true')),
      'it warns',
    );
    assert.equal((await insecure.sessions.getCapacity({})).totalSessions > 0, true);
  } finally {
    await insecure.stop();
  }
});
