import assert from 'node:assert/strict';
import { get } from 'node:http';
import { after, before, test } from 'node:test';
import { runTaskWithin } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// GET /metrics after a scripted workflow shows the expected counts and parses as Prometheus text.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => worker?.stop());

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition (format 0.0.4), checked line by line: anything else fails the test. */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        typed.add(meta[2]!);
      }
      continue;
    }
    const [, name, labelText, value] = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/.exec(line) ?? [];
    assert.ok(name !== undefined, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const pair of labelText ? (labelText.match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) : []) {
      const eq = pair.indexOf('=');
      labels[pair.slice(0, eq)] = JSON.parse(pair.slice(eq + 1)) as string;
    }
    const family = name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(name) || typed.has(family), `${name} has no TYPE line`);
    samples.push({ name, labels, value: Number(value) });
  }
  return samples;
}

function scrape(): Promise<string> {
  return new Promise((resolve, reject) =>
    get({ host: '127.0.0.1', port: worker.httpPort, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject),
  );
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

test('after a scripted workflow /metrics shows the tasks, their outcomes and limits, sessions and calls', async () => {
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'metrics', userId: 'secret-user-name' });
  const run = (code: string, constraints?: { timeoutSeconds: number; maxMemoryMb: number; maxCpuPercent: number }) =>
    runTaskWithin(worker.tasks, { sessionId, toolName: 'run.python', arguments: { code }, constraints }, 60_000);
  await run('print(1)');
  await run('import time\ntime.sleep(10)', { timeoutSeconds: 1, maxMemoryMb: 0, maxCpuPercent: 0 });
  await run('x = bytearray(512 * 1024 * 1024)\nprint(len(x))', { timeoutSeconds: 0, maxMemoryMb: 64, maxCpuPercent: 0 });
  await worker.sessions.getSessionStatus({ sessionId: 'session-unknown' }).catch(() => undefined);

  const text = await scrape();
  const samples = parsePrometheus(text);
  assert.equal(value(samples, 'codegen_tasks_total', { tool: 'run.python' }), 3);
  assert.equal(value(samples, 'codegen_tasks_total', { tool: 'run.python', status: 'STATUS_SUCCESS' }), 1);
  assert.equal(value(samples, 'codegen_tasks_total', { tool: 'run.python', status: 'STATUS_TIMEOUT' }), 1);
  assert.equal(value(samples, 'codegen_tasks_total', { tool: 'run.python', status: 'STATUS_FAILURE' }), 1);
  assert.equal(value(samples, 'codegen_tasks_killed_total', { limit: 'timeout' }), 1);
  assert.equal(value(samples, 'codegen_tasks_killed_total', { limit: 'memory' }), 1);
  assert.equal(value(samples, 'codegen_task_duration_seconds_count', { tool: 'run.python' }), 3);
  assert.ok(value(samples, 'codegen_run_python_start_seconds_count') >= 3);
  assert.equal(value(samples, 'codegen_sessions', { state: 'READY' }), 1);
  assert.equal(value(samples, 'codegen_sessions_capacity'), 10);
  assert.equal(value(samples, 'codegen_grpc_calls_total', { method: 'ExecuteTask', code: 'OK' }), 2);
  assert.equal(value(samples, 'codegen_grpc_calls_total', { method: 'ExecuteTask', code: 'DEADLINE_EXCEEDED' }), 1);
  assert.equal(value(samples, 'codegen_grpc_calls_total', { method: 'GetSessionStatus', code: 'NOT_FOUND' }), 1);
  assert.ok(value(samples, 'codegen_worker_process_resident_memory_bytes') > 0, 'Node process metrics');
  // No session ids or user data in labels.
  assert.doesNotMatch(text, /session-|secret-user-name|metrics"/);

  // The access log: a call that ended other than OK, at info, with method, code, duration and peer.
  const logged = worker.logs.find((l) => l.message === 'rpc' && l.method === 'GetSessionStatus');
  assert.equal(logged?.level, 'info');
  assert.equal(logged?.code, 'NOT_FOUND');
  assert.equal(typeof logged?.duration_ms, 'number');
  assert.match(String(logged?.peer), /127\.0\.0\.1/);
});
