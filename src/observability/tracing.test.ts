import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import {
  createEnvelope,
  PermanentError,
  PgQueue,
  pgQueueMigrations,
  type Envelope,
} from '../messaging/index.ts';
import { OutboxRelay, outboxMigrations } from '../outbox/index.ts';
import { circuitBreaker, retry } from '../resilience/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff } from '../time/index.ts';
import {
  injectTraceHeaders,
  instrumentPolicies,
  keelTracer,
  setupObservability,
  tracedAddToOutbox,
  tracedHandler,
  tracedPublisher,
  type Observability,
} from './index.ts';

const exporter = new InMemorySpanExporter();
let otel: Observability;
const dbs: TestDb[] = [];

beforeAll(() => {
  otel = setupObservability({
    serviceName: 'tracing-test',
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
});
afterAll(() => otel.shutdown());
afterEach(async () => {
  exporter.reset();
  for (const db of dbs.splice(0)) await db.close();
});

async function queueDb(): Promise<TestDb> {
  const db = await createTestDb({ schemaPrefix: 'otel' });
  dbs.push(db);
  await migrate(db, [...pgQueueMigrations, ...outboxMigrations]);
  return db;
}

const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);
const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

/** Publishes one envelope created inside a producer span; returns that span's trace and span ids. */
async function publishInSpan(
  queue: PgQueue,
  destination: string,
): Promise<{ traceId: string; spanId: string }> {
  return keelTracer().startActiveSpan('request', async (span) => {
    const message = createEnvelope({
      type: 'thing.v1',
      payload: { n: 1 },
      headers: injectTraceHeaders({ a: 'b' }),
    });
    await tracedPublisher(queue).publish(destination, [message]);
    span.end();
    return { traceId: span.spanContext().traceId, spanId: span.spanContext().spanId };
  });
}

describe('propagation', () => {
  it('writes traceparent of the active span, keeps other headers, and invents nothing without one', () => {
    expect(injectTraceHeaders({ a: 'b' })).toEqual({ a: 'b' });
    keelTracer().startActiveSpan('s', (span) => {
      const headers = injectTraceHeaders({ a: 'b' });
      const { traceId, spanId } = span.spanContext();
      expect(headers).toEqual({ a: 'b', traceparent: `00-${traceId}-${spanId}-01` });
      span.end();
    });
  });
});

describe('tracing through the PostgreSQL queue', () => {
  it('traceparent injected at create survives the queue; the consumer span is a child of the producer', async () => {
    const db = await queueDb();
    const queue = new PgQueue(db);
    const request = await publishInSpan(queue, 'things');
    const seen: Envelope[] = [];
    const consumer = queue.consumer(
      'things',
      tracedHandler(
        async (message) => {
          seen.push(message);
          // The handler runs inside the consumer span: what it starts joins the trace.
          keelTracer().startSpan('inner').end();
        },
        { destination: 'things' },
      ),
      { pollIntervalMs: 50 },
    );
    const handled = consumer.events.once('handled');
    await consumer.start();
    await handled;
    await consumer.stop();

    expect(seen[0]?.headers.traceparent).toMatch(new RegExp(`^00-${request.traceId}-[0-9a-f]{16}-01$`));
    const [publish] = spans('things publish');
    const [process] = spans('things process');
    const [inner] = spans('inner');
    expect(publish?.kind).toBe(SpanKind.PRODUCER);
    expect(parentOf(publish!)).toBe(request.spanId);
    expect(process?.kind).toBe(SpanKind.CONSUMER);
    expect(process?.spanContext().traceId).toBe(request.traceId);
    // The envelope names the span that created it (the request): the consumer is its child.
    expect(parentOf(process!)).toBe(request.spanId);
    expect(parentOf(inner!)).toBe(process!.spanContext().spanId);
    expect(process?.attributes).toMatchObject({
      'messaging.system': 'keel',
      'messaging.destination.name': 'things',
      'messaging.message.id': seen[0]!.id,
      'messaging.operation.type': 'process',
      'keel.attempt': 1,
      'keel.outcome': 'success',
    });
  });

  it('retries appear as attempts: one span per delivery, the failed one an error', async () => {
    const db = await queueDb();
    const queue = new PgQueue(db);
    const request = await publishInSpan(queue, 'flaky');
    const consumer = queue.consumer(
      'flaky',
      tracedHandler(
        async (_message, { attempt }) => {
          if (attempt === 1) throw new Error('first try fails');
        },
        { destination: 'flaky' },
      ),
      { pollIntervalMs: 20, retryDelay: () => 1 },
    );
    const handled = consumer.events.once('handled');
    await consumer.start();
    await handled;
    await consumer.stop();
    const attempts = spans('flaky process').sort(
      (a, b) => Number(a.attributes['keel.attempt']) - Number(b.attributes['keel.attempt']),
    );
    expect(attempts.map((s) => s.attributes['keel.attempt'])).toEqual([1, 2]);
    expect(attempts.map((s) => s.spanContext().traceId)).toEqual([request.traceId, request.traceId]);
    expect(attempts[0]?.status.code).toBe(SpanStatusCode.ERROR);
    expect(attempts[0]?.events.map((e) => e.name)).toEqual(['exception']);
    expect(attempts[1]?.status.code).toBe(SpanStatusCode.UNSET);
  });
});

describe('tracedHandler options', () => {
  const delivery = { destination: 'd', attempt: 1, signal: new AbortController().signal };

  it('link parentage starts a new trace that links to the producer', async () => {
    const message = keelTracer().startActiveSpan('producer', (span) => {
      span.end();
      return createEnvelope({ type: 't.v1', payload: {}, headers: injectTraceHeaders() });
    });
    const [producer] = spans('producer');
    await tracedHandler(async () => {}, { destination: 'd', parentage: 'link' })(message, delivery);
    const [process] = spans('d process');
    expect(process?.spanContext().traceId).not.toBe(producer?.spanContext().traceId);
    expect(parentOf(process!)).toBeUndefined();
    expect(process?.links[0]?.context.spanId).toBe(producer?.spanContext().spanId);
  });

  it('an expected outcome is an attribute, not an error; the throw still reaches the consumer', async () => {
    const handler = tracedHandler(
      async () => {
        throw new PermanentError('duplicate order');
      },
      { destination: 'd', expected: (e) => (e instanceof PermanentError ? 'rejected' : undefined) },
    );
    await expect(handler(createEnvelope({ type: 't.v1', payload: {} }), delivery)).rejects.toThrow(
      'duplicate',
    );
    const [process] = spans('d process');
    expect(process?.status.code).toBe(SpanStatusCode.UNSET);
    expect(process?.attributes['keel.outcome']).toBe('rejected');
    expect(process?.events).toEqual([]);
  });
});

describe('outbox tracing', () => {
  it('outbox.add is a child of the request; the relay publish joins the request trace from the row headers', async () => {
    const db = await queueDb();
    const queue = new PgQueue(db);
    const request = await keelTracer().startActiveSpan('request', async (span) => {
      const message = createEnvelope({ type: 'thing.v1', payload: {}, headers: injectTraceHeaders() });
      await db.transaction((tx) => tracedAddToOutbox(tx, 'things', message));
      span.end();
      return span.spanContext();
    });
    const relay = new OutboxRelay(db, tracedPublisher(queue));
    // Outside any span, as the relay's loop is.
    expect(trace.getActiveSpan()).toBeUndefined();
    expect(await relay.relayOnce()).toBe(1);
    const [add] = spans('outbox.add');
    const [publish] = spans('things publish');
    expect(parentOf(add!)).toBe(request.spanId);
    expect(publish?.spanContext().traceId).toBe(request.traceId);
    expect(parentOf(publish!)).toBe(request.spanId);
    expect(await queue.depth('things')).toBe(1);
  });
});

describe('policies on the active span', () => {
  it('retries are span events and an open breaker is an attribute, not an error', async () => {
    const retries = retry({ maxAttempts: 3, backoff: constantBackoff(0) });
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 1 } });
    using _handle = instrumentPolicies({ payment: retries, breaker }, otel.meterProvider.getMeter('keel'));
    await keelTracer().startActiveSpan('call', async (span) => {
      let calls = 0;
      await retries.execute(async () => {
        if (++calls < 3) throw new Error('flaky');
      });
      await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => undefined);
      await breaker.execute(async () => 'never').catch(() => undefined);
      span.end();
    });
    const [call] = spans('call');
    expect(call?.events.map((e) => [e.name, e.attributes?.['keel.attempt']])).toEqual([
      ['keel.retry', 1],
      ['keel.retry', 2],
    ]);
    expect(call?.attributes).toMatchObject({ 'keel.policy': 'breaker', 'keel.breaker.state': 'open' });
    expect(call?.status.code).toBe(SpanStatusCode.UNSET);
  });
});

describe('batch publish', () => {
  it('a relay batch from two requests joins the first trace and links to the second', async () => {
    const db = await queueDb();
    const queue = new PgQueue(db);
    const requests = [];
    for (const name of ['first', 'second']) {
      requests.push(
        await keelTracer().startActiveSpan(name, async (span) => {
          const message = createEnvelope({ type: 'thing.v1', payload: {}, headers: injectTraceHeaders() });
          await db.transaction((tx) => tracedAddToOutbox(tx, 'things', message));
          span.end();
          return span.spanContext();
        }),
      );
    }
    expect(await new OutboxRelay(db, tracedPublisher(queue)).relayOnce()).toBe(2);
    const [publish] = spans('things publish');
    expect(publish?.spanContext().traceId).toBe(requests[0]!.traceId);
    expect(publish?.links.map((l) => l.context.spanId)).toEqual([requests[1]!.spanId]);
    expect(publish?.attributes['messaging.batch.message_count']).toBe(2);
  });
});
