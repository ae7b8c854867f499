import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, type MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { InvalidArgumentError } from '../errors/index.ts';
import { createPrometheusReader } from './metrics-endpoint.ts';

export interface ObservabilityOptions {
  /** `service.name` on every span and metric. Required. */
  serviceName: string;
  /** Create a Prometheus reader for `metricsRoute`. Default false. */
  prometheus?: boolean;
  /** OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`). Default: none. */
  otlp?: string;
  /** Print finished spans to stdout (development). Default false. */
  console?: boolean;
  /** More span processors (tests pass `SimpleSpanProcessor(new InMemorySpanExporter())`). */
  spanProcessors?: SpanProcessor[];
  /** More metric readers. */
  metricReaders?: MetricReader[];
}

export interface Observability {
  readonly tracerProvider: BasicTracerProvider;
  readonly meterProvider: MeterProvider;
  /** Set when `prometheus: true`: pass it to `metricsRoute`. */
  readonly prometheus: PrometheusExporter | undefined;
  /** Flushes and closes the exporters and unregisters the globals. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Registers an OpenTelemetry SDK globally: a tracer provider, a meter provider, the
 * AsyncLocalStorage context manager (so the active span follows awaits) and the W3C trace
 * context and baggage propagators. Nothing is exported unless asked: no console output and no
 * network in tests. `OTEL_EXPORTER_OTLP_ENDPOINT` is read by the caller (the shop's config),
 * not here: the toolkit never reads the environment behind the application's back.
 *
 * One registration per process: a second call without `shutdown()` of the first throws.
 */
export function setupObservability(options: ObservabilityOptions): Observability {
  if (typeof options.serviceName !== 'string' || options.serviceName.length === 0) {
    throw new InvalidArgumentError('serviceName', 'a non-empty string', options.serviceName);
  }
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName });
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  if (options.otlp !== undefined)
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlp })));
  if (options.console === true) processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
  const tracerProvider = new BasicTracerProvider({ resource, spanProcessors: processors });
  const prometheus = options.prometheus === true ? createPrometheusReader() : undefined;
  const readers = [...(options.metricReaders ?? []), ...(prometheus === undefined ? [] : [prometheus])];
  const meterProvider = new MeterProvider({ resource, readers });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  // Each global is set only if unset; on a clash, undo only what this call set, so the
  // registration already in place keeps working.
  const undo: (() => void)[] = [];
  const steps: [() => boolean, () => void][] = [
    [() => context.setGlobalContextManager(contextManager), () => context.disable()],
    [() => trace.setGlobalTracerProvider(tracerProvider), () => trace.disable()],
    [() => metrics.setGlobalMeterProvider(meterProvider), () => metrics.disable()],
    [
      () =>
        propagation.setGlobalPropagator(
          new CompositePropagator({
            propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
          }),
        ),
      () => propagation.disable(),
    ],
  ];
  for (const [set, unset] of steps) {
    if (set()) {
      undo.push(unset);
      continue;
    }
    for (const unset of undo) unset();
    contextManager.disable();
    throw new InvalidArgumentError(
      'setupObservability',
      'one registration per process (call shutdown() first)',
      'a second call',
    );
  }
  let done: Promise<void> | undefined;
  return {
    tracerProvider,
    meterProvider,
    prometheus,
    shutdown() {
      done ??= (async () => {
        try {
          await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
        } finally {
          for (const unset of undo) unset();
          contextManager.disable();
        }
      })();
      return done;
    },
  };
}
