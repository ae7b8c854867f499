// keel/observability: OpenTelemetry as an interceptor layer. Messaging, outbox and resilience
// never import OpenTelemetry; this module wraps their handlers and publishers and listens to
// their events. Everything goes through `@opentelemetry/api`: a no-op until an SDK is registered.
export { injectTraceHeaders, extractTraceContext } from './propagation.ts';
export { tracedHandler, handlerDurationHistogram, type TracedHandlerOptions } from './traced-handler.ts';
export { tracedPublisher, tracedAddToOutbox, type TracedPublisherOptions } from './traced-publisher.ts';
export { instrumentConsumer } from './instrument-consumer.ts';
export {
  instrumentOutbox,
  instrumentQueueDepth,
  instrumentWalOutboxRelay,
  type DepthSource,
  type InstrumentWalOutboxRelayOptions,
} from './instrument-outbox.ts';
export { instrumentPolicies, breakerStateValue, type NamedPolicies } from './instrument-policies.ts';
export { instrumentRuntime } from './instrument-runtime.ts';
export { instrumentScheduler } from './instrument-scheduler.ts';
export { instrumentServiceHealth, serviceHealthValue } from './instrument-service-health.ts';
export {
  instrumentSagas,
  sagaAttributes,
  sagaTelemetryNames,
  type InstrumentSagasOptions,
} from './saga-instrumentation.ts';
export { instrumentHttp, type InstrumentHttpOptions } from './instrument-http.ts';
export { metricsRoute, createPrometheusReader, prometheusContentType } from './metrics-endpoint.ts';
export { traceLogMixin, withLogContext, logContextOf, redactPaths, type LogContext } from './log-context.ts';
export { setupObservability, type Observability, type ObservabilityOptions } from './setup.ts';
export { keelTracer, keelMeter, instrumentationScope } from './tracer.ts';
export {
  spanNames,
  spanNamePatterns,
  spanEvents,
  metricNames,
  keelAttributes,
  messagingAttributes,
} from './names.ts';
