// unit: own process (it patches grpc-js for the whole process: tests/unit-tier.sh)
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { connect } from 'node:http2';
import { BulkIntake, type Admission } from '../../src/grpc/bulkIntake.js';
import { waitFor } from '../helpers/tasks.js';
import { applyPacedIntake } from '../../src/grpc/pacedIntake.js';

// grpc-js itself, in this process, with a service of raw bytes: the patch pauses and resumes real
// HTTP/2 streams, and every request must still arrive whole.

const MB = 1024 * 1024;
const same = (b: Buffer) => b;
/** A unary method of raw bytes. */
const unary = (path: string) => ({
  path,
  requestStream: false as const,
  responseStream: false as const,
  requestSerialize: same,
  requestDeserialize: same,
  responseSerialize: same,
  responseDeserialize: same,
});
const SERVICE = { digest: unary('/t.T/Digest'), hold: unary('/t.T/Hold'), blob: unary('/t.T/Blob') } satisfies grpc.ServiceDefinition;

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

/** BulkIntake that records what it decided. */
class RecordingIntake extends BulkIntake {
  holding = 0;
  mostHeld = 0;
  queued = 0;
  waits = 0;
  stalls = 0;
  override admit(bytes: number, onGrant: () => void, onStall?: () => void): Admission {
    let held = false;
    const count = () => ((held = true), (this.holding += bytes), (this.mostHeld = Math.max(this.mostHeld, this.holding)));
    const admission = super.admit(
      bytes,
      () => (count(), onGrant()),
      () => (this.stalls++, onStall?.()),
    );
    if (admission.granted) count();
    else this.queued++;
    return {
      granted: admission.granted,
      release: () => {
        if (held) this.holding -= bytes;
        held = false;
        admission.release();
      },
      progress: () => admission.progress(),
    };
  }
  override took(bytes: number): number {
    const wait = super.took(bytes);
    if (wait > 0) this.waits++;
    return wait;
  }
}

const holds: (() => void)[] = [];
const server = new grpc.Server({ 'grpc.max_receive_message_length': -1 });
server.addService(SERVICE, {
  digest: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, sha(call.request)),
  hold: (_: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => holds.push(() => done(null, Buffer.alloc(0))),
  // A reply of as many bytes as the request says (its first byte seeds them).
  blob: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) =>
    done(null, request(call.request[0]!, Number(call.request.subarray(1).toString()))),
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
const Client = grpc.makeGenericClientConstructor(SERVICE, 'T');
const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
  'grpc.max_send_message_length': -1,
  'grpc.max_receive_message_length': -1,
}) as unknown as {
  digest(request: Buffer, callback: (err: grpc.ServiceError | null, reply: Buffer) => void): grpc.ClientUnaryCall;
  hold(request: Buffer, callback: (err: grpc.ServiceError | null, reply: Buffer) => void): grpc.ClientUnaryCall;
  blob(request: Buffer, callback: (err: grpc.ServiceError | null, reply: Buffer) => void): grpc.ClientUnaryCall;
  close(): void;
};
after(() => {
  client.close();
  server.forceShutdown();
});

function digest(request: Buffer): { call: grpc.ClientUnaryCall; reply: Promise<Buffer> } {
  let call!: grpc.ClientUnaryCall;
  const reply = new Promise<Buffer>((resolve, reject) => (call = client.digest(request, (err, r) => (err ? reject(err) : resolve(r)))));
  return { call, reply };
}

/** A reply of `size` bytes made from seed `i` (as `request(i, size)`). */
function blob(i: number, size: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) =>
    client.blob(Buffer.concat([Buffer.from([i]), Buffer.from(String(size))]), (err, r) => (err ? reject(err) : resolve(r))),
  );
}

/** An interactive call held in flight until the function returned is called. */
async function interactive(): Promise<() => Promise<void>> {
  const before = holds.length;
  const done = new Promise<void>((resolve, reject) => client.hold(Buffer.from('small'), (err) => (err ? reject(err) : resolve())));
  await until(() => holds.length > before, 'the interactive call reached its handler');
  const release = holds[before]!;
  return async () => {
    release();
    await done;
  };
}

/** Waits (a turn of the event loop at a time) until `condition` holds; fails after 10 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const request = (i: number, size: number) => Buffer.alloc(size, i + 1).fill(i * 3 + 7, 0, 99);
const requests = (n: number, size: number) => Array.from({ length: n }, (_, i) => request(i, size));

test('large requests take turns within the bytes allowed at once, and each arrives whole', async () => {
  const intake = new RecordingIntake({ bytesAtOnce: 5 * MB, bytesPerSecondWhileBusy: 0 });
  applyPacedIntake(intake);
  const sent = requests(6, 2 * MB + 5);
  const replies = await Promise.all(sent.map((r) => digest(r).reply));
  assert.deepEqual(replies, sent.map(sha));
  assert.ok(intake.queued > 0, 'some waited for their turn');
  assert.ok(intake.mostHeld <= 5 * MB, `at most 5 MB at once (held ${intake.mostHeld})`);
  assert.equal(intake.holding, 0);
  const small = await digest(Buffer.from('small')).reply;
  assert.deepEqual(small, sha(Buffer.from('small')), 'small requests never wait');
});

test('while an interactive call is served, large requests come no faster than the pace; alone, they are not paced', async () => {
  const rate = 8 * MB;
  const intake = new RecordingIntake({ bytesAtOnce: 64 * MB, bytesPerSecondWhileBusy: rate });
  applyPacedIntake(intake);
  const release = await interactive();
  const [a, b] = [request(0, 2 * MB), request(1, 2 * MB)];
  const start = performance.now();
  const replies = await Promise.all([digest(a).reply, digest(b).reply]);
  const took = performance.now() - start;
  assert.deepEqual(replies, [sha(a), sha(b)]);
  // A lower bound only: a pause can make the requests slower, never faster.
  const burst = Math.max(256 * 1024, (rate / 1000) * 20);
  const least = ((4 * MB - burst - 64 * 1024) / rate) * 1000;
  assert.ok(took >= least, `4 MB at 8 MB/s took ${took.toFixed(0)} ms (at least ${least.toFixed(0)})`);
  assert.ok(intake.waits > 0);
  await release();
  await waitFor(() => !intake.busy()); // the linger after the interactive call
  intake.waits = 0;
  const alone = request(0, 8 * MB);
  assert.deepEqual(await digest(alone).reply, sha(alone));
  assert.equal(intake.waits, 0, 'a lone upload is never paced');
});

test('while an interactive call is served, large replies go no faster than the pace, whole and in order; alone, they are not paced', async () => {
  const rate = 8 * MB;
  const intake = new RecordingIntake({ bytesAtOnce: 64 * MB, bytesPerSecondWhileBusy: rate });
  applyPacedIntake(intake);
  const release = await interactive();
  const start = performance.now();
  const replies = await Promise.all([blob(1, 2 * MB), blob(2, 2 * MB), blob(3, 100)]);
  const took = performance.now() - start;
  assert.deepEqual(replies, [request(1, 2 * MB), request(2, 2 * MB), request(3, 100)]);
  // A lower bound only: a pause can make the replies slower, never faster.
  const burst = Math.max(256 * 1024, (rate / 1000) * 20);
  const least = ((4 * MB - burst) / rate) * 1000;
  assert.ok(took >= least, `4 MB of replies at 8 MB/s took ${took.toFixed(0)} ms (at least ${least.toFixed(0)})`);
  assert.ok(intake.waits > 0);
  await release();
  await waitFor(() => !intake.busy()); // the linger after the interactive call
  intake.waits = 0;
  assert.deepEqual(await blob(4, 8 * MB), request(4, 8 * MB));
  assert.deepEqual(await blob(5, 8 * MB), request(5, 8 * MB));
  assert.equal(intake.waits, 0, 'a lone download is never paced, nor the one after it');
});

test('a call cancelled while it waits its turn or its pace gives back what it held', async () => {
  const intake = new RecordingIntake({ bytesAtOnce: 3 * MB, bytesPerSecondWhileBusy: 4 * MB });
  applyPacedIntake(intake);
  const release = await interactive();
  const [first, second, third] = [request(0, 2 * MB), request(1, 2 * MB), request(2, 2 * MB)];
  const slow = digest(first);
  const waiting = digest(second);
  await until(() => intake.queued > 0, 'a request waits its turn');
  waiting.call.cancel();
  await assert.rejects(waiting.reply, (err: grpc.ServiceError) => err.code === grpc.status.CANCELLED);
  slow.call.cancel(); // while paced
  await assert.rejects(slow.reply, (err: grpc.ServiceError) => err.code === grpc.status.CANCELLED);
  await release();
  await until(() => intake.holding === 0, 'what the cancelled calls held is given back');
  assert.deepEqual(await digest(third).reply, sha(third), 'the next one is admitted');
  assert.equal(intake.holding, 0);
});

test('a large request that stops arriving while others wait its turn is ended RESOURCE_EXHAUSTED; the next one goes on', async () => {
  const intake = new RecordingIntake({ bytesAtOnce: 5 * MB, bytesPerSecondWhileBusy: 0, stallMs: 300 });
  applyPacedIntake(intake);
  // A client of its own making: it announces 4 MB, sends 64 KiB of it, and nothing more.
  const session = connect(`http://127.0.0.1:${port}`);
  const stalled = session.request({ ':method': 'POST', ':path': '/t.T/Digest', 'content-type': 'application/grpc', te: 'trailers' });
  const header = Buffer.alloc(5);
  header.writeUInt32BE(4 * MB, 1);
  stalled.write(Buffer.concat([header, Buffer.alloc(64 * 1024, 1)]));
  const trailers = new Promise<Record<string, unknown>>((resolve) => stalled.on('trailers', resolve).on('response', (h) => h['grpc-status'] && resolve(h)));
  stalled.on('data', () => undefined);
  stalled.on('error', () => undefined);
  try {
    await until(() => intake.holding > 0, 'the stalled request holds its turn');
    const next = requests(1, 3 * MB)[0]!;
    const reply = digest(next).reply;
    await until(() => intake.queued > 0, 'the next one waits');
    let replied: Buffer | undefined;
    void reply.then((r) => (replied = r));
    await until(() => replied !== undefined, 'the next one went on once the stalled one was ended');
    assert.deepEqual(replied, sha(next));
    assert.equal((await trailers)['grpc-status'], String(grpc.status.RESOURCE_EXHAUSTED));
    assert.equal(intake.stalls, 1);
  } finally {
    session.destroy();
  }
});
