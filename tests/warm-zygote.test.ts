import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ZYGOTE_SOURCE } from '../src/sandbox/warm/zygote.js';
import { LineSplitter, parseZygoteEvent, type ZygoteEvent } from '../src/sandbox/warm/zygoteProtocol.js';
import { isAlive, waitFor } from './helpers/tasks.js';

// The zygote itself (src/sandbox/warm/zygote.py), driven over its protocol without a worker or a
// sandbox: orderings the worker produces only now and then, made to happen every time.

const dir = await mkdtemp(join(tmpdir(), 'codegen-zygote-test-'));
after(() => rm(dir, { recursive: true, force: true }));

async function startZygote() {
  const socketPath = join(dir, `io-${Math.random().toString(36).slice(2)}.sock`);
  const connections: Socket[] = [];
  const server = createServer((socket) => connections.push(socket.on('error', () => undefined)));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const zygote = spawn('python3', ['-u', '-c', ZYGOTE_SOURCE, socketPath], { stdio: ['pipe', 'pipe', 'pipe'] });
  const events: ZygoteEvent[] = [];
  const lines = new LineSplitter();
  zygote.stdout.setEncoding('utf8').on('data', (text: string) => events.push(...lines.push(text).map(parseZygoteEvent)));
  let stderr = '';
  zygote.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => zygote.once('exit', resolve));
  const send = (...messages: object[]) => zygote.stdin.write(messages.map((m) => `${JSON.stringify(m)}\n`).join(''));
  const event = async <E extends ZygoteEvent['ev']>(ev: E, id?: number) => {
    await waitFor(() => events.some((e) => e.ev === ev && (id === undefined || ('id' in e && e.id === id))) || zygote.exitCode !== null);
    const found = events.find((e) => e.ev === ev && (id === undefined || ('id' in e && e.id === id)));
    assert.ok(found, `the zygote exited (code ${zygote.exitCode}) instead of saying ${ev}: ${stderr}`);
    return found as Extract<ZygoteEvent, { ev: E }>;
  };
  after(async () => {
    zygote.stdin.end(); // the zygote kills its children and exits
    const killer = setTimeout(() => zygote.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
    for (const socket of connections) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  await event('ready');
  return { zygote, connections, send, event, stderr: () => stderr };
}

test('a go for a child that is already dead, not yet reaped, leaves the zygote running', async () => {
  // The worker's order when a call is cancelled (or times out) just after its child was placed
  // in its task group: {op:kill}, then the {op:go} it was about to send. A zygote that reads both
  // at once kills the child and then writes its gate, whose reader is gone.
  const z = await startZygote();
  const run = (id: number) => ({ op: 'run', id, token: `t${id}`, exec: { argv: ['/bin/true'], cwd: '/', env: {} } });
  z.send(run(1));
  const { pid } = await z.event('forked', 1);
  await waitFor(() => z.connections.length === 2); // it waits on its gate now

  // Both lines reach a zygote that runs nothing meanwhile, the child dead and not reaped.
  z.zygote.kill('SIGSTOP');
  z.send({ op: 'kill', id: 1 }, { op: 'go', id: 1 });
  process.kill(pid, 'SIGKILL');
  await waitFor(() => !isAlive(pid)); // a zombie: its stopped parent cannot reap it
  z.zygote.kill('SIGCONT');

  const exit = await z.event('exit', 1);
  assert.equal(exit.signal, 9);
  z.send(run(2));
  await z.event('forked', 2);
  assert.equal(z.zygote.exitCode, null, `the zygote exited: ${z.stderr()}`);
});
