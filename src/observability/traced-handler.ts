import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Histogram,
  type Link,
  type Meter,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import type { Handler } from '../messaging/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { keelAttributes, messagingAttributes as m, metricNames, spanNames } from './names.ts';
import { logContextOf, withLogContext } from './log-context.ts';
import { extractTraceContext } from './propagation.ts';
import { keelTracer } from './tracer.ts';

export interface TracedHandlerOptions {
  /** The queue, topic or stream: names the span and `messaging.destination.name`. */
  destination: string;
  /** `messaging.system`. Default `keel`. */
  system?: string;
  /**
   * How the consumer span relates to the producer span named by the envelope's `traceparent`:
   * `child` (default) makes it the parent, so one request is one trace; `link` starts a new
   * trace that links to it (for fan-out consumers whose work is not part of the request).
   */
  parentage?: 'child' | 'link';
  /** Default: keel's tracer from the global provider (a no-op until an SDK is registered). */
  tracer?: Tracer;
  /** When given, every call's duration goes to the `keel.handler.duration` histogram (s). */
  meter?: Meter;
  /**
   * Classifies a thrown error as an expected outcome (its name, e.g. `duplicate`): the span
   * records it as `keel.outcome` and stays unset, not ERROR. The error is still rethrown.
   * Default: every error is an error.
   */
  expected?: (error: unknown) => string | undefined;
  /** Measures the handler's duration. Default the system clock. */
  clock?: Clock;
}

/** Bucket bounds (s) for latency histograms: 5 ms to 10 s. The SDK's default bounds are for ms. */
export const secondsBuckets: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Creates the `keel.handler.duration` histogram once per meter. */
export function handlerDurationHistogram(meter: Meter): Histogram {
  return meter.createHistogram(metricNames.handlerDuration, {
    description: 'Time a message handler took, by destination and outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: [...secondsBuckets] },
  });
}

/**
 * Wraps a handler in a CONSUMER span `<destination> process`, parented on (or linked to) the
 * envelope's trace context, and runs the handler inside it: spans the handler starts, and
 * trace headers it injects into messages it sends, belong to the same trace.
 *
 * Log lines written inside the handler (with `traceLogMixin`) carry the trace and span ids, the
 * message's correlation id, and its id as the causation id.
 *
 * A throw is recorded as an exception with status ERROR and rethrown unchanged, so the
 * consumer's retry and dead-letter decisions are the same with and without tracing.
 */
export function tracedHandler<P>(handler: Handler<P>, options: TracedHandlerOptions): Handler<P> {
  const tracer = options.tracer ?? keelTracer();
  const name = spanNames.process(options.destination);
  const parentage = options.parentage ?? 'child';
  const clock = options.clock ?? systemClock;
  const duration = options.meter === undefined ? undefined : handlerDurationHistogram(options.meter);
  const base: Attributes = {
    [m.system]: options.system ?? 'keel',
    [m.destinationName]: options.destination,
    [m.operationType]: 'process',
  };
  return async (message, delivery) => {
    const carried = extractTraceContext(message, ROOT_CONTEXT);
    const attributes: Attributes = {
      ...base,
      [m.messageId]: message.id,
      [keelAttributes.attempt]: delivery.attempt,
    };
    let parent = carried;
    let links: Link[] | undefined;
    if (parentage === 'link') {
      parent = ROOT_CONTEXT;
      const producer = trace.getSpanContext(carried);
      links = producer === undefined ? undefined : [{ context: producer }];
    }
    const span = tracer.startSpan(name, { kind: SpanKind.CONSUMER, attributes, links }, parent);
    const started = clock.now();
    let outcome = 'success';
    try {
      // Log lines written by the handler carry the message's correlation id and its id as causation.
      await context.with(trace.setSpan(parent, span), () =>
        withLogContext(logContextOf(message), () => handler(message, delivery)),
      );
    } catch (error) {
      outcome = recordFailure(span, error, options.expected);
      throw error;
    } finally {
      span.setAttribute(keelAttributes.outcome, outcome);
      span.end();
      duration?.record((clock.now() - started) / 1000, {
        [m.destinationName]: options.destination,
        [keelAttributes.outcome]: outcome,
      });
    }
  };
}

/** Records a throw on the span; returns the outcome name. */
export function recordFailure(
  span: Span,
  error: unknown,
  expected?: (error: unknown) => string | undefined,
): string {
  const outcome = expected?.(error);
  if (outcome !== undefined) return outcome;
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
  span.setAttribute(ATTR_ERROR_TYPE, errorType(error));
  return 'error';
}

function errorType(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    if (error instanceof Error) return error.name;
  }
  return 'unknown';
}
