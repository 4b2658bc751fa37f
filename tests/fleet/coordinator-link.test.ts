import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { test } from 'node:test';
import { ServerCredentials } from '@grpc/grpc-js';
import { createServer } from 'nice-grpc';
import { WorkerLifecycleDefinition } from '../../gen/codegen/v1/worker_lifecycle.js';
import { makeCa } from '../helpers/certificates.js';
import { waitFor } from '../helpers/tasks.js';
import { startWorker } from '../helpers/worker.js';

// The registration client reaches a coordinator that serves TLS and asks for client certificates,
// sends COORDINATOR_AUTH_TOKEN as a bearer token, and carries a W3C traceparent when tracing.

test('registration over mTLS with a bearer token and a traceparent', async () => {
  const ca = makeCa('coordinator');
  const coordinatorCert = ca.issue('coordinator');
  const workerCert = ca.issue('worker', { client: true });
  const seen: { authorization?: string; traceparent?: string }[] = [];
  const coordinator = createServer();
  coordinator.add(WorkerLifecycleDefinition, {
    registerWorker: async (_request, context) => {
      seen.push({
        authorization: context.metadata.get('authorization') as string | undefined,
        traceparent: context.metadata.get('traceparent') as string | undefined,
      });
      return { success: true, message: 'welcome', heartbeatIntervalSeconds: 30 };
    },
    heartbeat: async () => ({ acknowledged: true, message: '' }),
    deregisterWorker: async () => ({ success: true, message: '' }),
  });
  const port = await coordinator.listen(
    '127.0.0.1:0',
    ServerCredentials.createSsl(ca.ca, [{ cert_chain: coordinatorCert.cert, private_key: coordinatorCert.key }], true),
  );
  const collector = createHttpServer((req, res) => (req.resume(), res.end('{}')));
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const worker = await startWorker({
    env: {
      COORDINATOR_ADDR: `localhost:${port}`,
      COORDINATOR_TLS_CA: ca.caFile,
      COORDINATOR_TLS_CERT: workerCert.certFile,
      COORDINATOR_TLS_KEY: workerCert.keyFile,
      COORDINATOR_AUTH_TOKEN: 'coordinator-secret',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as { port: number }).port}`,
      WORKER_SPARE_SESSIONS: '0',
    },
  });
  try {
    await waitFor(() => seen.length > 0, 15_000);
    assert.equal(seen[0]!.authorization, 'Bearer coordinator-secret');
    assert.match(seen[0]!.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  } finally {
    await worker.stop();
    coordinator.forceShutdown();
    collector.close();
    ca.remove();
  }
});
