import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { READ_BURST, READ_GAP_MS, READ_LINES, ReadPacer, readOnlyWhenAsked } from '../../src/sandbox/process/pacedReads.js';

const dir = mkdtempSync(join(tmpdir(), 'paced-reads-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A connected pair of Unix sockets, as a process's output is to the worker. */
async function socketPair(name: string): Promise<{ writer: Socket; reader: Socket; close: () => void }> {
  const path = join(dir, name);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const writer = createConnection(path);
  const reader = await accepted;
  await new Promise((resolve) => writer.once('connect', resolve));
  return {
    writer,
    reader,
    close: () => {
      writer.destroy();
      reader.destroy();
      server.close();
    },
  };
}

/** Writes each piece as a write of its own, and resolves once the kernel holds them all. */
async function writeEach(socket: Socket, pieces: string[]): Promise<void> {
  await Promise.all(pieces.map((p) => new Promise<void>((resolve, reject) => socket.write(p, (err) => (err ? reject(err) : resolve())))));
}

/** One turn of the event loop, its poll for I/O included. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

// The patch readOnlyWhenAsked makes to Node's streams: this fails if a Node release stops
// honouring a socket's high-water mark set after it was made.
/** Writes 50 small pieces, then lets the event loop poll for them. */
async function fiftyMore(writer: Socket): Promise<void> {
  await writeEach(
    writer,
    Array.from({ length: 50 }, () => 'x\n'),
  );
  await turn();
  await turn();
}

test('a socket held to reading when asked reads at most once ahead of its reader', async () => {
  const { writer, reader, close } = await socketPair('held');
  try {
    readOnlyWhenAsked(reader);
    const chunks = reader[Symbol.asyncIterator]();
    await writeEach(writer, ['a\n', 'b\n']);
    const first = (await chunks.next()).value as Buffer;
    assert.ok(first.length > 0);
    await fiftyMore(writer);
    const ahead = reader.readableLength;
    await fiftyMore(writer);
    assert.equal(reader.readableLength, ahead, 'no second read while its reader did not ask');
    const rest = [first];
    let held = first.length;
    while (held < 204) {
      const next = (await chunks.next()).value as Buffer;
      rest.push(next);
      held += next.length;
    }
    assert.equal(Buffer.concat(rest).toString(), 'a\nb\n' + 'x\n'.repeat(100), 'all of it, in order, once asked');
  } finally {
    close();
  }
});

test('without the hold a socket reads ahead (what the test above would see unpatched)', async () => {
  const { writer, reader, close } = await socketPair('unheld');
  try {
    const chunks = reader[Symbol.asyncIterator]();
    await writeEach(writer, ['a\n']);
    await chunks.next();
    await fiftyMore(writer);
    const ahead = reader.readableLength;
    await fiftyMore(writer);
    assert.ok(reader.readableLength > ahead, 'read again into its own buffer');
  } finally {
    close();
  }
});

/** A pacer on a clock whose time passes only in its pauses, which it counts. */
function pacerWith(paced: () => boolean) {
  const pauses: number[] = [];
  let now = 0;
  const clock = {
    now: () => now,
    pause: (ms: number) => {
      pauses.push(ms);
      now += ms;
      return Promise.resolve();
    },
  };
  return { pacer: new ReadPacer(paced, clock), pauses, wait: (ms: number) => (now += ms) };
}

test('while paced, reads go at once up to the burst, then one per READ_GAP_MS', async () => {
  const { pacer, pauses } = pacerWith(() => true);
  for (let i = 0; i < READ_BURST + 10; i++) await pacer.after(1);
  assert.equal(pauses.length, 10);
  assert.ok(pauses.every((ms) => ms === READ_GAP_MS));
});

test('a read of many lines costs one read per READ_LINES of them: printing in big batches of short lines is paced too', async () => {
  const { pacer, pauses } = pacerWith(() => true);
  await pacer.after(READ_LINES * 100); // 101 reads' worth at once
  assert.equal(pauses.length, 1);
  assert.equal(pauses[0], (101 - READ_BURST) * READ_GAP_MS);
});

test('never paced while no one else needs the worker; time passing refills the burst', async () => {
  const quiet = pacerWith(() => false);
  for (let i = 0; i < READ_BURST * 4; i++) assert.equal(quiet.pacer.after(READ_LINES * 10), undefined);
  assert.equal(quiet.pauses.length, 0);

  const busy = pacerWith(() => true);
  for (let i = 0; i < READ_BURST; i++) assert.equal(busy.pacer.after(1), undefined);
  busy.wait(READ_GAP_MS * 3);
  for (let i = 0; i < 3; i++) assert.equal(busy.pacer.after(1), undefined, 'three reads earned by waiting');
  assert.notEqual(busy.pacer.after(1), undefined);
});
