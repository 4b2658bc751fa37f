import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { Metadata } from 'nice-grpc';
import { waitFor } from '../helpers/tasks.js';
import { startWorker, type RunningWorker } from '../helpers/worker.js';

// With OTEL_EXPORTER_OTLP_ENDPOINT set, a workflow yields an RPC span per call and a task span
// under ExecuteTask, the RPC span's parent taken from the caller's W3C traceparent. The receiver
// is an OTLP/HTTP (JSON) endpoint on loopback.

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
}

const spans: OtlpSpan[] = [];
let receiver: Server;
let worker: RunningWorker;

before(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      if (req.url === '/v1/traces' && String(req.headers['content-type']).startsWith('application/json')) {
        const payload = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
        for (const resource of payload.resourceSpans) for (const scope of resource.scopeSpans) spans.push(...scope.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as { port: number }).port;
  worker = await startWorker({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, WORKER_SPARE_SESSIONS: '0' } });
});

after(async () => {
  await worker?.stop();
  receiver?.close();
});

test("one workflow's RPC and task spans reach the collector, the RPC span parented by the caller's traceparent", async () => {
  const traceId = randomBytes(16).toString('hex');
  const callerSpan = randomBytes(8).toString('hex');
  const metadata = Metadata({ traceparent: `00-${traceId}-${callerSpan}-01` });
  const { sessionId } = await worker.sessions.createSession({ workspaceId: 'traced' }, { metadata });
  for await (const _ of worker.tasks.executeTask({ sessionId, toolName: 'run.python', arguments: { code: 'print(1)' } }, { metadata }));

  await waitFor(() => spans.some((s) => s.name === '/codegen.v1.TaskExecution/ExecuteTask') && spans.some((s) => s.name === 'task run.python'), 15_000);
  const ours = spans.filter((s) => s.traceId === traceId);
  const create = ours.find((s) => s.name === '/codegen.v1.SessionManagement/CreateSession');
  const execute = ours.find((s) => s.name === '/codegen.v1.TaskExecution/ExecuteTask');
  const task = ours.find((s) => s.name === 'task run.python');
  assert.ok(create && execute && task, `spans of the trace: ${ours.map((s) => s.name).join(', ')}`);
  assert.equal(create.parentSpanId, callerSpan);
  assert.equal(execute.parentSpanId, callerSpan);
  assert.equal(execute.kind, 2, 'a server span');
  assert.equal(task.parentSpanId, execute.spanId, 'the task span is under its RPC span');
  const attribute = (span: OtlpSpan, key: string) => span.attributes.find((a) => a.key === key)?.value.stringValue;
  assert.equal(attribute(task, 'codegen.tool'), 'run.python');
  assert.equal(attribute(task, 'codegen.session_id'), sessionId);
  assert.equal(attribute(task, 'codegen.task_status'), 'STATUS_SUCCESS');
});
