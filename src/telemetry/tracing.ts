import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { Metadata } from 'nice-grpc';

/**
 * OpenTelemetry tracing, on only when OTEL_EXPORTER_OTLP_ENDPOINT is set (the SDK and exporter
 * are then loaded; otherwise nothing is, and every hook below is a single check). Spans: one per
 * RPC (its parent taken from the caller's W3C `traceparent`), one per task under it, and one per
 * call to the coordinator (whose `traceparent` it carries).
 */

let tracer: Tracer | undefined;
let shutdown: (() => Promise<void>) | undefined;

export async function startTracing(serviceName: string, attributes: Record<string, string>): Promise<boolean> {
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT) return false;
  const [{ BasicTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { W3CTraceContextPropagator }] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
  ]);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, ...attributes }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 500 })],
  });
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  tracer = trace.getTracer('codegen-mcp-worker');
  shutdown = () => provider.shutdown();
  return true;
}

/** Sends what is buffered (at shutdown). */
export async function stopTracing(): Promise<void> {
  await shutdown?.().catch(() => undefined);
}

export function tracingEnabled(): boolean {
  return tracer !== undefined;
}

const metadataGetter = {
  keys: (carrier: Metadata) => [...carrier].map(([key]) => key),
  get: (carrier: Metadata, key: string) => {
    const value = carrier.get(key);
    return typeof value === 'string' ? value : undefined;
  },
};

/** A server span for an RPC, continuing the caller's trace when its metadata carries one. */
export function startRpcSpan(method: string, metadata: Metadata): { span: Span; context: Context } | undefined {
  if (!tracer) return undefined;
  const parent = propagation.extract(context.active(), metadata, metadataGetter);
  const span = tracer.startSpan(method, { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.method': method } }, parent);
  return { span, context: trace.setSpan(parent, span) };
}

/** A span under `parent` (an RPC's context). */
export function startChildSpan(name: string, parent: Context, attributes: Record<string, string>): Span | undefined {
  return tracer?.startSpan(name, { attributes }, parent);
}

/** A client span for a call to the coordinator, and the metadata headers that carry it. */
export function startClientSpan(name: string): { span: Span; headers: Record<string, string> } | undefined {
  if (!tracer) return undefined;
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT });
  const headers: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), headers);
  return { span, headers };
}

export function endSpan(span: Span | undefined, error?: string): void {
  if (!span) return;
  if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  span.end();
}
