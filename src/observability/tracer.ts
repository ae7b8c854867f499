import { metrics, trace, type Meter, type Tracer } from '@opentelemetry/api';

/** The instrumentation scope every keel span and metric is reported under. */
export const instrumentationScope = 'keel';

/** keel's tracer from the global provider: a no-op until the application registers an SDK. */
export function keelTracer(): Tracer {
  return trace.getTracer(instrumentationScope);
}

/** keel's meter from the global provider: a no-op until the application registers an SDK. */
export function keelMeter(): Meter {
  return metrics.getMeter(instrumentationScope);
}
