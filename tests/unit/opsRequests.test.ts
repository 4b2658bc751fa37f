import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, test } from 'node:test';
import type { Logger } from '../../src/logger.js';
import { startHttpServer } from '../../src/http/httpServer.js';
import { opsRoutes } from '../../src/http/opsRequests.js';

let ready = false;
const state = { ready: () => ready, metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'codegen_up 1\n' }) };
const logger = { error: () => undefined } as unknown as Logger;
const server = await startHttpServer('127.0.0.1:0', opsRoutes(state), { tls: undefined, maxConnections: 1024 }, logger);
after(() => server.close());

function call(path: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('/healthz is 200 whenever the process answers', async () => {
  ready = false;
  assert.equal((await call('/healthz')).status, 200);
  assert.equal(JSON.parse((await call('/healthz')).body).message, 'alive');
});

test('/readyz is 503 while starting or draining and 200 while ready', async () => {
  ready = false;
  const notReady = await call('/readyz');
  assert.equal(notReady.status, 503);
  assert.equal(JSON.parse(notReady.body).error, 'not ready: starting or draining');
  ready = true;
  assert.equal((await call('/readyz')).status, 200);
  assert.equal((await call('/readyz', 'HEAD')).status, 200);
});

test('/metrics serves the exposition with its content type', async () => {
  const metrics = await call('/metrics');
  assert.equal(metrics.status, 200);
  assert.equal(metrics.type, 'text/plain; version=0.0.4');
  assert.equal(metrics.body, 'codegen_up 1\n');
});

test('the ops endpoints take GET and HEAD only', async () => {
  for (const path of ['/healthz', '/readyz', '/metrics']) {
    for (const method of ['POST', 'PUT', 'DELETE']) assert.equal((await call(path, method)).status, 405, `${method} ${path}`);
  }
});
