import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Meter,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
} from '@opentelemetry/semantic-conventions';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { systemClock, type Clock } from '../time/index.ts';
import { withLogContext } from './log-context.ts';
import { metricNames, spanNames } from './names.ts';
import { secondsBuckets } from './traced-handler.ts';
import { keelTracer } from './tracer.ts';

export interface InstrumentHttpOptions {
  /** Default: keel's tracer from the global provider. */
  tracer?: Tracer;
  /** When given, request durations go to `http.server.request.duration` (s). */
  meter?: Meter;
  clock?: Clock;
}

/** What a request carries between hooks. */
interface Timing {
  span: Span;
  started: number;
}

const timings = new WeakMap<FastifyRequest, Timing>();
const correlationHeader = 'x-correlation-id';

/** The route template (`/v1/orders/:id`), never the raw URL: a label per order id would explode. */
function routeOf(request: FastifyRequest): string {
  return request.routeOptions.url ?? 'unmatched';
}

/**
 * Adds hooks to a fastify app (call before it is ready): a SERVER span `<METHOD> <route>` per
 * request, parented on the caller's `traceparent` when it sends one, active while the handler
 * runs (so spans and trace headers made in the handler join it); and, with a meter, the
 * `http.server.request.duration` histogram by method, route and status code. Its `_count` is
 * the request count; errors are the 5xx status codes. A 4xx is the client's error: the span
 * stays unset, as the HTTP semantic conventions say for servers.
 */
export function instrumentHttp(app: FastifyInstance, options: InstrumentHttpOptions = {}): void {
  const tracer = options.tracer ?? keelTracer();
  const clock = options.clock ?? systemClock;
  const duration = options.meter?.createHistogram(metricNames.httpDuration, {
    description: 'Duration of HTTP requests, by route',
    unit: 's',
    advice: { explicitBucketBoundaries: [...secondsBuckets] },
  });
  app.addHook('onRequest', (request, _reply, done) => {
    const route = routeOf(request);
    const parent = propagation.extract(context.active(), request.headers);
    const span = tracer.startSpan(
      spanNames.httpRoute(request.method, route),
      {
        kind: SpanKind.SERVER,
        attributes: { [ATTR_HTTP_REQUEST_METHOD]: request.method, [ATTR_HTTP_ROUTE]: route },
      },
      parent,
    );
    timings.set(request, { span, started: clock.now() });
    done();
  });
  // After the body is parsed: parsing runs in the socket's async context, so the span is made
  // active here, right before the handler, and stays active through its awaits.
  app.addHook('preHandler', (request, _reply, done) => {
    const timing = timings.get(request);
    if (timing === undefined) return done();
    // Every log line of the handler carries the request's correlation id: the caller's
    // `x-correlation-id`, else fastify's request id. Messages the handler creates take it too.
    const header = request.headers[correlationHeader];
    const correlationId = typeof header === 'string' && header.length > 0 ? header : String(request.id);
    context.with(trace.setSpan(context.active(), timing.span), () => withLogContext({ correlationId }, done));
  });
  app.addHook('onError', (request, _reply, error, done) => {
    timings.get(request)?.span.recordException(error);
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const timing = timings.get(request);
    if (timing === undefined) return done();
    timings.delete(request);
    const status = reply.statusCode;
    timing.span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    if (status >= 500) timing.span.setStatus({ code: SpanStatusCode.ERROR });
    timing.span.end();
    duration?.record((clock.now() - timing.started) / 1000, {
      [ATTR_HTTP_REQUEST_METHOD]: request.method,
      [ATTR_HTTP_ROUTE]: routeOf(request),
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: status,
    });
    done();
  });
}
