import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { usage } from '../../src/config.js';

// No container runtime runs here: what can be checked of deploy/ is checked. The manifests
// parse, use only settings the worker documents, and wire probes, secrets and scraping to what
// the worker serves; the image is built by the Makefile's own targets.

const root = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const documented = new Set([...usage().matchAll(/\b((?:WORKER|COORDINATOR)_[A-Z0-9_]+)\b/g)].map((m) => m[1]));

interface Container {
  env: { name: string; value?: string; valueFrom?: unknown }[];
  readinessProbe: { grpc?: { port: number; service?: string } };
  livenessProbe: { httpGet?: { path: string; port: number } };
  ports: { containerPort: number }[];
  volumeMounts: { name: string; mountPath: string }[];
}

function manifests(path: string): Record<string, unknown>[] {
  return parseAllDocuments(read(path)).map((doc) => {
    assert.deepEqual(doc.errors, [], `${path} parses`);
    return doc.toJS() as Record<string, unknown>;
  });
}

test('the StatefulSet: data on a volume, token from a Secret, gRPC readiness, /healthz liveness, Prometheus scraping, S3 checkpoints', () => {
  const [set] = manifests('deploy/k8s/statefulset.yaml') as {
    kind: string;
    spec: {
      template: {
        metadata: { annotations: Record<string, string> };
        spec: { containers: Container[]; terminationGracePeriodSeconds: number; volumes: { name: string; secret?: { secretName: string } }[] };
      };
      volumeClaimTemplates: { metadata: { name: string } }[];
    };
  }[];
  assert.ok(set, 'the StatefulSet parses');
  assert.equal(set.kind, 'StatefulSet');
  const pod = set.spec.template.spec;
  const [worker] = pod.containers;
  assert.ok(worker, 'the StatefulSet has a container');
  const env = new Map(worker.env.map((e) => [e.name, e]));
  for (const name of env.keys()) if (/^(WORKER|COORDINATOR)_/.test(name)) assert.ok(documented.has(name), `${name} is a setting the worker documents`);
  assert.deepEqual(worker.readinessProbe.grpc, { port: 50052, service: '' });
  assert.deepEqual(worker.livenessProbe.httpGet, { path: '/healthz', port: 50053 });
  assert.deepEqual(set.spec.template.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '50053', 'prometheus.io/path': '/metrics' });
  assert.match(String(env.get('WORKER_CHECKPOINT_STORE')?.value), /^s3:\/\//);
  assert.equal(env.get('WORKER_GRPC_ADDR')?.value, '0.0.0.0:50052');
  // Off loopback the worker insists on a token: it comes from a mounted Secret.
  const tokenFile = String(env.get('WORKER_AUTH_TOKEN_FILE')?.value);
  const mount = worker.volumeMounts.find((m) => tokenFile.startsWith(`${m.mountPath}/`));
  assert.ok(mount && pod.volumes.find((v) => v.name === mount.name)?.secret, 'the token file is a mounted Secret');
  assert.ok(worker.volumeMounts.some((m) => m.name === 'data' && m.mountPath === env.get('WORKER_DATA_DIR')?.value));
  assert.ok(set.spec.volumeClaimTemplates.some((t) => t.metadata.name === 'data'));
  assert.ok(pod.terminationGracePeriodSeconds > Number(env.get('WORKER_SHUTDOWN_GRACE_SECONDS')?.value) + 10, 'Kubernetes waits longer than the worker drains');
});

test('the Service and the example Secret parse and match the StatefulSet', () => {
  const [service] = manifests('deploy/k8s/service.yaml') as {
    kind: string;
    metadata: { name: string };
    spec: { clusterIP: string; ports: { port: number }[] };
  }[];
  assert.ok(service, 'the Service parses');
  assert.equal(service.kind, 'Service');
  assert.equal(service.spec.clusterIP, 'None');
  assert.deepEqual(
    service.spec.ports.map((p) => p.port),
    [50052, 50053],
  );
  const [secret] = manifests('deploy/k8s/secret.example.yaml') as { kind: string; stringData: Record<string, string> }[];
  assert.ok(secret, 'the example Secret parses');
  const set = read('deploy/k8s/statefulset.yaml');
  for (const key of Object.keys(secret.stringData)) assert.ok(set.includes(key), `the StatefulSet uses ${key}`);
});

test("the image is made by the Makefile's own targets and sets only documented settings", () => {
  const dockerfile = read('deploy/Dockerfile');
  const makefile = read('Makefile');
  const targets = new Set([...makefile.matchAll(/^([a-z][a-z0-9-]*):/gm)].map((m) => m[1]));
  const made = [...dockerfile.matchAll(/^RUN make (.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  assert.ok(made.length > 0, 'the image runs make');
  for (const target of made) assert.ok(targets.has(target), `make ${target} is a Makefile target`);
  for (const [, name] of dockerfile.matchAll(/\b((?:WORKER|COORDINATOR)_[A-Z0-9_]+)=/g)) assert.ok(documented.has(name), `${name} is documented`);
  assert.match(dockerfile, /^ENTRYPOINT \["node", "dist\/src\/main\.js"\]$/m);
});
