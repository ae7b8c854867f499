import { Writable } from 'node:stream';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope } from '../messaging/index.ts';
import {
  keelTracer,
  logContextOf,
  redactPaths,
  setupObservability,
  traceLogMixin,
  tracedHandler,
  withLogContext,
  type Observability,
} from './index.ts';

const exporter = new InMemorySpanExporter();
let otel: Observability;
beforeAll(() => {
  otel = setupObservability({
    serviceName: 'logs-test',
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
});
afterAll(() => otel.shutdown());

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino(
    { mixin: traceLogMixin, redact: { paths: [...redactPaths], censor: '[redacted]' } },
    sink,
  );
  return { logger, lines };
}

describe('logs', () => {
  it('every line inside a span and a message context carries trace, span, correlation and causation ids', async () => {
    const { logger, lines } = capture();
    logger.info('outside');
    const message = createEnvelope({ type: 't.v1', payload: {}, headers: { 'correlation-id': 'corr-1' } });
    await keelTracer().startActiveSpan('work', async (span) => {
      await withLogContext(logContextOf(message), async () => {
        logger.info('before await');
        await new Promise((resolve) => setImmediate(resolve));
        logger.info('after await');
      });
      span.end();
    });
    const { traceId, spanId } = exporter.getFinishedSpans()[0]!.spanContext();
    expect(lines).toHaveLength(3);
    expect(lines[0]).not.toHaveProperty('trace_id');
    expect(lines[0]).not.toHaveProperty('correlation_id');
    for (const line of lines.slice(1)) {
      expect(line).toMatchObject({
        trace_id: traceId,
        span_id: spanId,
        correlation_id: 'corr-1',
        causation_id: message.id,
      });
    }
  });

  it('a traced handler logs with the message ids and its consumer span', async () => {
    const { logger, lines } = capture();
    const message = createEnvelope({ type: 't.v1', payload: {}, headers: { 'correlation-id': 'corr-2' } });
    const handler = tracedHandler(
      async () => {
        logger.info('handling');
      },
      { destination: 'd' },
    );
    await handler(message, { destination: 'd', attempt: 1, signal: new AbortController().signal });
    const span = exporter.getFinishedSpans().find((s) => s.name === 'd process')!;
    expect(lines[0]).toMatchObject({
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
      correlation_id: 'corr-2',
      causation_id: message.id,
    });
  });

  it('redacts authorization, API keys and payment details', () => {
    const { logger, lines } = capture();
    logger.info({
      req: { headers: { authorization: 'Bearer s3cret', 'x-api-key': 'k-1', accept: 'json' } },
      account: { apiKey: 'k-2' },
      payload: { payment: { cardNumber: '4111111111111111' }, amount: 10 },
    });
    const text = JSON.stringify(lines[0]);
    for (const secret of ['s3cret', 'k-1', 'k-2', '4111111111111111']) expect(text).not.toContain(secret);
    expect(text).toContain('"accept":"json"');
    expect(text).toContain('"amount":10');
  });
});

describe('setupObservability', () => {
  it('registers one SDK per process and names the field when serviceName is missing', () => {
    expect(trace.getTracerProvider()).toBeDefined();
    expect(() => setupObservability({ serviceName: 'again' })).toThrow(/setupObservability/);
    // The first registration is still the one in use.
    keelTracer().startSpan('still-recorded').end();
    expect(exporter.getFinishedSpans().some((s) => s.name === 'still-recorded')).toBe(true);
    expect(() => setupObservability({ serviceName: '' })).toThrow(/serviceName/);
  });
});
