// One trace from the producer to the handler across every real broker: the envelope's
// traceparent header must survive each adapter's encoding (AMQP headers, stream fields, Kafka
// record headers), so the consumer span joins the producer's trace as its child. The servers
// must be up (127.0.0.1); a missing one fails the file by name, never a silent skip.
import { randomBytes } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KafkaBroker } from '../../src/messaging/adapters/kafka/index.ts';
import { kafkaTestSuite } from '../../src/messaging/adapters/kafka/kafka-test-suite.ts';
import { kafkaBrokers } from '../../src/messaging/adapters/kafka/test-support.ts';
import { RabbitMqBroker } from '../../src/messaging/adapters/rabbitmq/index.ts';
import {
  deleteQueues,
  rabbitMqUrl,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { RedisTestBrokers, requireRedis } from '../../src/messaging/adapters/redis/redis-test-server.ts';
import { createEnvelope, type Envelope, type MessageBroker } from '../../src/messaging/index.ts';
import {
  injectTraceHeaders,
  keelTracer,
  setupObservability,
  tracedHandler,
  tracedPublisher,
  type Observability,
} from '../../src/observability/index.ts';

vi.setConfig({ testTimeout: 60_000 });

const exporter = new InMemorySpanExporter();
let otel: Observability;
beforeAll(() => {
  otel = setupObservability({
    serviceName: 'trace-across-brokers',
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
});
afterAll(() => otel.shutdown());

const run = randomBytes(4).toString('hex');
const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);

/** Publishes inside a request span, consumes through a traced handler; returns what the trace looks like. */
async function traceThrough(broker: MessageBroker, destination: string) {
  const request = await keelTracer().startActiveSpan('request', async (span) => {
    const message = createEnvelope({
      type: 'thing.v1',
      key: 'k-1',
      payload: { n: 1 },
      headers: injectTraceHeaders(),
    });
    await tracedPublisher(broker).publish(destination, [message]);
    span.end();
    return span.spanContext();
  });
  const seen: Envelope[] = [];
  const consumer = broker.consumer(
    destination,
    tracedHandler(async (message) => void seen.push(message), { destination }),
  );
  const handled = consumer.events.once('handled');
  await consumer.start();
  await handled;
  await consumer.stop();
  const [process] = spans(`${destination} process`);
  const [publish] = spans(`${destination} publish`);
  return { request, seen, process, publish };
}

function expectOneTrace(result: Awaited<ReturnType<typeof traceThrough>>): void {
  const { request, seen, process, publish } = result;
  expect(seen[0]?.headers.traceparent).toMatch(new RegExp(`^00-${request.traceId}-[0-9a-f]{16}-01$`));
  expect(publish?.kind).toBe(SpanKind.PRODUCER);
  expect(process?.kind).toBe(SpanKind.CONSUMER);
  expect(process?.spanContext().traceId).toBe(request.traceId);
  expect(process?.parentSpanContext?.spanId).toBe(request.spanId);
}

describe('traceparent survives RabbitMQ', () => {
  const queues: string[] = [];
  beforeAll(requireRabbitMq);
  afterAll(() => deleteQueues(queues));

  it('the consumer span is a child of the producer span', async () => {
    const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: `keel-trace-${run}` });
    try {
      expectOneTrace(await traceThrough(broker, `trace-rabbit-${run}`));
    } finally {
      queues.push(...broker.declaredQueues());
      await broker.close();
    }
  });
});

describe('traceparent survives Redis Streams', () => {
  const brokers = new RedisTestBrokers();
  beforeAll(() => requireRedis());
  afterAll(() => brokers.cleanup());

  it('the consumer span is a child of the producer span', async () => {
    expectOneTrace(await traceThrough(brokers.open(), `trace-redis-${run}`));
  });
});

describe('traceparent survives Kafka', () => {
  // Registered in this block: a Kafka that is down fails it, not the other brokers' blocks.
  const kafka = kafkaTestSuite();

  it('the consumer span is a child of the producer span', async () => {
    const broker = new KafkaBroker({ brokers: kafkaBrokers, partitions: 1 });
    kafka.cleanups.push(async () => {
      kafka.topics.push(...broker.ensuredTopics());
      await broker.close();
    });
    expectOneTrace(await traceThrough(broker, `trace-kafka-${run}`));
  });
});
