import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The worker's Prometheus metrics, one registry for the process, served at GET /metrics. Labels
 * carry only bounded, non-user values (tool names, statuses, limits, method names): never a
 * session id, a path or anything a client typed.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'codegen_worker_' });

const seconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export const metrics = {
  grpcCalls: new Counter({
    name: 'codegen_grpc_calls_total',
    help: 'gRPC calls by method and status code',
    labelNames: ['method', 'code'] as const,
    registers: [registry],
  }),
  tasks: new Counter({
    name: 'codegen_tasks_total',
    help: 'Tasks finished, by tool and final status',
    labelNames: ['tool', 'status'] as const,
    registers: [registry],
  }),
  taskSeconds: new Histogram({
    name: 'codegen_task_duration_seconds',
    help: 'Task duration by tool',
    labelNames: ['tool'] as const,
    buckets: seconds,
    registers: [registry],
  }),
  taskPhaseSeconds: new Histogram({
    name: 'codegen_task_phase_seconds',
    help: 'Where process tasks spend their time, by tool and phase (see telemetry/taskPhases.ts)',
    labelNames: ['tool', 'phase'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10],
    registers: [registry],
  }),
  runPythonStartSeconds: new Histogram({
    name: 'codegen_run_python_start_seconds',
    help: 'From a run.python task starting to its code running',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  networkRefused: new Counter({
    name: 'codegen_network_refused_total',
    help: 'Connections (connect) and DNS questions (dns) of a session its network policy refused',
    labelNames: ['session_id', 'kind'] as const,
    registers: [registry],
  }),
  killed: new Counter({
    name: 'codegen_tasks_killed_total',
    help: 'Tasks ended by a limit (killed_by)',
    labelNames: ['limit'] as const,
    registers: [registry],
  }),
  pkgInstallSeconds: new Histogram({
    name: 'codegen_pkg_install_duration_seconds',
    help: 'pkg.install duration, by outcome',
    labelNames: ['outcome'] as const,
    buckets: seconds,
    registers: [registry],
  }),
  checkpointSeconds: new Histogram({
    name: 'codegen_checkpoint_duration_seconds',
    help: 'Checkpoint and restore duration',
    labelNames: ['operation'] as const,
    buckets: seconds,
    registers: [registry],
  }),
  checkpointBytes: new Counter({
    name: 'codegen_checkpoint_bytes_total',
    help: 'Archive bytes written by checkpoints and read by restores',
    labelNames: ['operation'] as const,
    registers: [registry],
  }),
  artifactBytes: new Counter({ name: 'codegen_artifact_bytes_total', help: 'Artifact bytes uploaded and stored', registers: [registry] }),
  registered: new Gauge({
    name: 'codegen_coordinator_registered',
    help: '1 while registered with the coordinator, 0 otherwise (absent: standalone)',
    registers: [registry],
  }),
  heartbeatFailures: new Counter({
    name: 'codegen_coordinator_heartbeat_failures_total',
    help: 'Heartbeats that failed or were not acknowledged',
    registers: [registry],
  }),
  sessions: new Gauge({ name: 'codegen_sessions', help: 'Sessions by state', labelNames: ['state'] as const, registers: [registry] }),
  limitsUnenforced: new Gauge({
    name: 'codegen_limits_unenforced',
    help: 'Limit controllers (memory, cpu, pids) sessions go without: 1 each, under WORKER_ALLOW_UNENFORCED_LIMITS=true only',
    labelNames: ['controller'] as const,
    registers: [registry],
  }),
  capacity: new Gauge({ name: 'codegen_sessions_capacity', help: 'Sessions this worker takes at most (WORKER_MAX_SESSIONS)', registers: [registry] }),
  diskFree: new Gauge({ name: 'codegen_data_disk_free_bytes', help: "Bytes free on the worker's data disk", registers: [registry] }),
  diskCommitted: new Gauge({
    name: 'codegen_data_disk_committed_bytes',
    help: "Bytes sessions' disks may still grow by (their limits less what they hold), reserved on the data disk",
    registers: [registry],
  }),
  diskAvailable: new Gauge({
    name: 'codegen_data_disk_available_bytes',
    help: 'Bytes a new session disk or checkpoint may reserve (WORKER_DISK_OVERCOMMIT times the free space less a floor, less what is committed)',
    registers: [registry],
  }),
};

/** Seconds since a `performance.now()` reading. */
export function secondsSince(startMs: number): number {
  return (performance.now() - startMs) / 1000;
}
