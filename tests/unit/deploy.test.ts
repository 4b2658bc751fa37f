import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Secret, Service } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { usage } from '../../src/config.js';
import { UID_LOCK_DIR } from '../../src/sandbox/confine/uidRange.js';
import { registry } from '../../src/telemetry/metrics.js';

// No container runtime or cluster runs here: what can be checked of deploy/ is checked. Every
// manifest validates against the Kubernetes (and Prometheus Operator) schemas, offline; they use
// only settings the worker documents and wire probes, secrets, scraping, alerts and scaling to
// what the worker serves and exports; the image is the three stages its comments promise.

const root = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const documented = new Set([...usage().matchAll(/\b((?:WORKER|COORDINATOR)_[A-Z0-9_]+)\b/g)].map((m) => m[1]));
const DIR = 'deploy/kubernetes';

/** The schema model of each kind the manifests use. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1 StatefulSet': StatefulSet,
  'v1 Service': Service,
  'v1 Secret': Secret,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1 NetworkPolicy': NetworkPolicy,
  'autoscaling/v2 HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'monitoring.coreos.com/v1 ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1 PrometheusRule': PrometheusRule,
};

type Manifest = Record<string, unknown>;

/** Every document of every manifest file, by kind. */
function manifests(): Map<string, Manifest> {
  const byKind = new Map<string, Manifest>();
  for (const file of readdirSync(new URL(`${DIR}/`, root)).filter((f) => f.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(read(`${DIR}/${file}`))) {
      assert.deepEqual(doc.errors, [], `${file} parses`);
      const manifest = doc.toJS() as Manifest;
      byKind.set(String(manifest.kind), manifest);
    }
  }
  return byKind;
}

test('every manifest validates against its kind’s schema, and each kind is there once', () => {
  const all = manifests();
  assert.deepEqual(
    [...all.keys()].sort(),
    Object.keys(MODELS)
      .map((k) => k.split(' ')[1])
      .sort(),
  );
  for (const manifest of all.values()) {
    const Model = MODELS[`${manifest.apiVersion} ${manifest.kind}`];
    assert.ok(Model, `a schema for ${manifest.apiVersion} ${manifest.kind}`);
    assert.doesNotThrow(() => new Model(manifest as never).validate(), `${manifest.kind} is valid`);
  }
  // The check can fail: a wrong type is refused.
  const broken = structuredClone(all.get('StatefulSet')!) as { spec: Record<string, unknown> };
  broken.spec.replicas = 'three';
  assert.throws(() => new StatefulSet(broken as never).validate(), /replicas/);
});

/** The manifests as their schemas' types. */
function typed() {
  const all = manifests();
  const as = <T>(Model: new (data: never) => T, kind: string): T => new Model(all.get(kind) as never);
  return {
    set: as(StatefulSet, 'StatefulSet'),
    service: as(Service, 'Service'),
    secret: as(Secret, 'Secret'),
    budget: as(PodDisruptionBudget, 'PodDisruptionBudget'),
    policy: as(NetworkPolicy, 'NetworkPolicy'),
    hpa: as(HorizontalPodAutoscaler, 'HorizontalPodAutoscaler'),
    monitor: as(ServiceMonitor, 'ServiceMonitor'),
    rules: as(PrometheusRule, 'PrometheusRule'),
  };
}

test('the StatefulSet: settings documented, probes that work with TLS, no token, one worker per node, distinct uid blocks, resources from its settings', () => {
  const { set } = typed();
  const pod = set.spec!.template.spec!;
  const worker = pod.containers[0]!;
  const env = new Map((worker.env ?? []).map((e) => [e.name, e.value]));
  const setting = (name: string) => Number(env.get(name));
  for (const name of env.keys()) if (/^(WORKER|COORDINATOR)_/.test(name)) assert.ok(documented.has(name), `${name} is a setting the worker documents`);
  assert.doesNotMatch(String(worker.image), /:latest$|^[^:]+$/, 'a versioned image tag');
  const http = worker.ports!.find((p) => p.name === 'http')!.containerPort;
  assert.equal(`0.0.0.0:${http}`, env.get('WORKER_HTTP_ADDR'));
  assert.deepEqual(worker.readinessProbe?.httpGet, { path: '/readyz', port: 'http', scheme: 'HTTP' });
  assert.deepEqual(worker.livenessProbe?.httpGet, { path: '/healthz', port: 'http' });
  const startup = worker.startupProbe!;
  assert.equal(startup.httpGet?.path, '/healthz');
  assert.ok(startup.periodSeconds! * startup.failureThreshold! >= 300, 'adoption may take minutes');
  assert.equal(pod.automountServiceAccountToken, false);
  const spread = pod.affinity!.podAntiAffinity!.requiredDuringSchedulingIgnoredDuringExecution![0]!;
  assert.equal(spread.topologyKey, 'kubernetes.io/hostname');
  assert.deepEqual(spread.labelSelector?.matchLabels, set.spec!.template.metadata!.labels);
  // uid blocks are locked where every worker of the node sees the locks.
  const locks = worker.volumeMounts!.find((m) => m.mountPath === UID_LOCK_DIR);
  assert.ok(locks, `${UID_LOCK_DIR} is mounted`);
  assert.deepEqual(pod.volumes!.find((v) => v.name === locks.name)?.hostPath, { path: UID_LOCK_DIR, type: 'DirectoryOrCreate' });
  // Resources: every session at its default limits, plus the worker's own 1536 Mi and one core.
  const sessions = setting('WORKER_MAX_SESSIONS');
  const { limits, requests } = worker.resources!;
  assert.equal(limits!.memory, `${sessions * setting('WORKER_DEFAULT_MEMORY_MB') + 1536}Mi`);
  assert.equal(requests!.memory, limits!.memory);
  assert.equal(Number(limits!.cpu), (sessions * setting('WORKER_DEFAULT_CPU_PERCENT')) / 100 + 1);
  const claim = set.spec!.volumeClaimTemplates![0]!;
  const storageGi = parseInt(String(claim.spec!.resources!.requests!.storage), 10);
  assert.ok(storageGi * 1024 >= sessions * setting('WORKER_DEFAULT_DISK_MB') + 4096, 'room for every session’s disk and the caches');
  // Secrets, the data volume, S3 checkpoints, the drain.
  const tokenFile = String(env.get('WORKER_AUTH_TOKEN_FILE'));
  const mount = worker.volumeMounts!.find((m) => tokenFile.startsWith(`${m.mountPath}/`));
  assert.ok(mount && pod.volumes!.find((v) => v.name === mount.name)?.secret, 'the token file is a mounted Secret');
  assert.ok(worker.volumeMounts!.some((m) => m.name === claim.metadata!.name && m.mountPath === env.get('WORKER_DATA_DIR')));
  assert.match(String(env.get('WORKER_CHECKPOINT_STORE')), /^s3:\/\//);
  assert.ok(pod.terminationGracePeriodSeconds! > setting('WORKER_SHUTDOWN_GRACE_SECONDS') + 10, 'Kubernetes waits longer than the worker drains');
  assert.equal(set.spec!.persistentVolumeClaimRetentionPolicy?.whenScaled, 'Retain', 'a pod scaled away keeps its sessions');
});

test('the Service, Secret, budget, policy, scaling and monitoring all point at the StatefulSet’s pods and ports', () => {
  const { set, service, secret, budget, policy, hpa, monitor } = typed();
  const labels = set.spec!.template.metadata!.labels;
  const ports = new Map(set.spec!.template.spec!.containers[0]!.ports!.map((p) => [p.name, p.containerPort]));
  assert.equal(service.spec!.clusterIP, 'None');
  assert.equal(service.spec!.publishNotReadyAddresses, true, 'a draining or starting pod keeps its name');
  assert.equal(set.spec!.template.metadata!.annotations?.['prometheus.io/scrape'], undefined, 'scraped once, by the ServiceMonitor');
  assert.deepEqual(service.spec!.selector, labels);
  for (const p of service.spec!.ports!) assert.equal(ports.get(p.name), p.port, `the Service's ${p.name} port`);
  for (const key of Object.keys(secret.stringData!)) assert.ok(JSON.stringify(set).includes(key), `the StatefulSet uses ${key}`);
  assert.deepEqual(budget.spec!.selector!.matchLabels, labels);
  assert.deepEqual(policy.spec!.podSelector.matchLabels, labels);
  const allowed = policy.spec!.ingress!.flatMap((rule) => rule.ports!.map((p) => p.port));
  assert.deepEqual(allowed.sort(), [...ports.values()].sort(), 'gRPC and HTTP, each from its own callers');
  assert.deepEqual(hpa.spec!.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'StatefulSet', name: set.metadata!.name });
  assert.deepEqual(monitor.spec.selector.matchLabels, service.metadata!.labels);
  assert.ok(service.spec!.ports!.some((p) => p.name === monitor.spec.endpoints![0]!.port));
});

test('alerts and the scaling rule use only metrics the worker exports', async () => {
  const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
  const rules = typed().rules.spec.groups!.flatMap((g) => g.rules ?? []);
  const names = [...rules.map((r) => String(r.expr)), read(`${DIR}/hpa.yaml`)].flatMap((text) => [...text.matchAll(/\b(codegen_[a-z_]+)/g)].map((m) => m[1]!));
  const used = new Set(names.filter((n) => n !== 'codegen_sessions_used_ratio'));
  for (const name of used) assert.ok(exported.has(name), `${name} is a metric the worker exports`);
  for (const wanted of [
    'codegen_sessions_capacity',
    'codegen_data_disk_free_bytes',
    'codegen_grpc_calls_total',
    'codegen_coordinator_heartbeat_failures_total',
    'codegen_limits_unenforced',
  ])
    assert.ok(used.has(wanted), `an alert watches ${wanted}`);
});

test('the image: three stages, runtime npm packages alone, a supported Node LTS, tini, the system packages make system-deps installs', () => {
  const dockerfile = read('deploy/Dockerfile');
  const stages = [...dockerfile.matchAll(/^FROM (\S+) AS (\S+)$/gm)].map((m) => [m[1], m[2]]);
  assert.deepEqual(
    stages.map(([, name]) => name),
    ['build', 'modules', 'runtime'],
  );
  const image = /^ARG NODE_IMAGE=node:(\d+)\.\d+\.\d+-bookworm-slim$/m.exec(dockerfile);
  assert.ok(image, 'a pinned Node image');
  assert.ok(Number(image[1]) >= 22 && Number(image[1]) % 2 === 0, `Node ${image[1]} is a supported LTS line`);
  assert.doesNotMatch(dockerfile, /:latest\b/);
  const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'));
  const modules = dockerfile.slice(dockerfile.indexOf('AS modules'), dockerfile.indexOf('AS runtime'));
  assert.match(modules, /^RUN npm ci --omit=dev\b/m);
  assert.match(runtime, /^COPY --from=modules \/build\/node_modules node_modules$/m);
  assert.doesNotMatch(runtime, /npm (install|ci)|\bmake\b|gcc/, 'nothing is built in the runtime stage');
  // What the worker reads at run time: the descriptors it serves by reflection, the programs it hands to Python, sh and Go.
  assert.match(runtime, /^COPY gen\/codegen\.binpb gen\/codegen\.binpb$/m);
  assert.match(runtime, /^COPY src src$/m);
  assert.match(runtime, /^ENTRYPOINT \["\/usr\/bin\/tini", "--", "node", "dist\/src\/main\.js"\]$/m);
  // The runtime's Debian packages are system-deps' (Go's only when WORKER_LANGUAGES names go).
  const installed = (text: string) =>
    [...text.matchAll(/apt-get install -y (?:-qq |--no-install-recommends )(.+?)(?: \\|;|$)/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  const makefile = read('Makefile');
  const systemDeps = makefile.slice(makefile.indexOf('\nsystem-deps:'), makefile.indexOf('\n\n', makefile.indexOf('\nsystem-deps:')));
  assert.deepEqual(installed(runtime).sort(), [...installed(systemDeps), 'tini', 'ca-certificates'].sort());
  assert.match(runtime, /case ",\$\{WORKER_LANGUAGES\}," in \*,go,\*\) apt-get install -y --no-install-recommends golang-go/);
  for (const [, name] of dockerfile.matchAll(/\b((?:WORKER|COORDINATOR)_[A-Z0-9_]+)=/g)) assert.ok(documented.has(name), `${name} is documented`);
});
