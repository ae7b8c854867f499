import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  injectTraceHeaders,
  instrumentHttp,
  setupObservability,
  traceLogMixin,
  type Observability,
} from './index.ts';

const exporter = new InMemorySpanExporter();
let otel: Observability;
beforeAll(() => {
  otel = setupObservability({
    serviceName: 'http-test',
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
});
afterAll(() => otel.shutdown());
afterEach(() => exporter.reset());

function app() {
  const http = Fastify();
  instrumentHttp(http);
  http.post('/things/:id', async (request) => ({
    // What a handler would put in an envelope it creates, after the body was parsed.
    headers: injectTraceHeaders(),
    activeIsRoute: trace.getActiveSpan() !== undefined,
    body: request.body,
  }));
  http.get('/boom', async () => {
    throw new Error('boom');
  });
  return http;
}

describe('instrumentHttp', () => {
  it("every log line a handler writes carries the request's trace id, span id and correlation id", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { mixin: traceLogMixin },
      { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- keeps the app typed as the default FastifyInstance
    const http = Fastify({ loggerInstance: logger as FastifyBaseLogger });
    instrumentHttp(http);
    http.post('/orders', async (request) => {
      request.log.info('validating');
      await new Promise((resolve) => setImmediate(resolve));
      request.log.info('stored');
      return { ok: true };
    });
    await http.inject({
      method: 'POST',
      url: '/orders',
      payload: {},
      headers: { 'x-correlation-id': 'c-42' },
    });
    await http.inject({ method: 'POST', url: '/orders', payload: {} });
    await http.close();
    const [first, second] = exporter.getFinishedSpans();
    const handlerLines = lines.filter((l) => l.msg === 'validating' || l.msg === 'stored');
    expect(handlerLines).toHaveLength(4);
    expect(handlerLines.slice(0, 2).map((l) => [l.trace_id, l.span_id, l.correlation_id])).toEqual([
      [first!.spanContext().traceId, first!.spanContext().spanId, 'c-42'],
      [first!.spanContext().traceId, first!.spanContext().spanId, 'c-42'],
    ]);
    // Without the header the correlation id is fastify's request id, the one its own lines carry.
    expect(handlerLines[2]).toMatchObject({
      trace_id: second!.spanContext().traceId,
      correlation_id: handlerLines[2]!.reqId,
    });
  });

  it('a SERVER span per route template, active in the handler after the body is parsed', async () => {
    const http = app();
    const response = await http.inject({ method: 'POST', url: '/things/42', payload: { a: 1 } });
    await http.close();
    const [span] = exporter.getFinishedSpans();
    expect(span?.name).toBe('POST /things/:id');
    expect(span?.kind).toBe(SpanKind.SERVER);
    expect(span?.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/things/:id',
      'http.response.status_code': 200,
    });
    const body = response.json<{ headers: { traceparent?: string }; activeIsRoute: boolean }>();
    expect(body.activeIsRoute).toBe(true);
    expect(body.headers.traceparent).toBe(
      `00-${span!.spanContext().traceId}-${span!.spanContext().spanId}-01`,
    );
  });

  it("continues the caller's trace from its traceparent header", async () => {
    const http = app();
    const caller = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await http.inject({ method: 'POST', url: '/things/1', payload: {}, headers: { traceparent: caller } });
    await http.close();
    const [span] = exporter.getFinishedSpans();
    expect(span?.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(span?.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
  });

  it('5xx is an error with the exception recorded; 404 is the client’s, on the route "unmatched"', async () => {
    const http = app();
    await http.inject({ url: '/boom' });
    await http.inject({ url: '/nowhere/123' });
    await http.close();
    const [boom, missing] = exporter.getFinishedSpans();
    expect(boom?.status.code).toBe(SpanStatusCode.ERROR);
    expect(boom?.events.map((e) => e.name)).toEqual(['exception']);
    expect(missing?.name).toBe('GET unmatched');
    expect(missing?.status.code).toBe(SpanStatusCode.UNSET);
    expect(missing?.attributes['http.response.status_code']).toBe(404);
  });
});
