import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { MemoryBroker } from '../messaging/adapters/memory/index.ts';
import { createEnvelope } from '../messaging/index.ts';
import { ManualClock } from '../time/index.ts';
import { instrumentConsumer } from './instrument-consumer.ts';

class CollectingReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** Every data point of the collection as `name{destination} value`. */
async function scrape(reader: CollectingReader): Promise<string[]> {
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  return pointsOf(resourceMetrics);
}

function pointsOf(metrics: ResourceMetrics): string[] {
  return metrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .flatMap((metric) =>
      metric.dataPoints.map(
        (p) =>
          `${metric.descriptor.name}{${String(p.attributes['messaging.destination.name'])}} ${JSON.stringify(p.value)}`,
      ),
    )
    .sort();
}

const message = createEnvelope({ type: 'job.run.v1', payload: {} });
const failure = new Error('x');

describe('instrumentConsumer', () => {
  it('a collection in the same turn as the events sees every one of them', async () => {
    const reader = new CollectingReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('keel');
    const broker = new MemoryBroker({ clock: new ManualClock() });
    const consumer = broker.consumer('jobs', async () => {});
    using _handle = instrumentConsumer(consumer, meter, 'jobs');
    expect(await scrape(reader)).toEqual([]);

    for (let i = 0; i < 100; i++) consumer.events.emit('handled', { message, attempt: 1 });
    consumer.events.emit('retried', { message, attempt: 1, delayMs: 10, error: failure });
    expect(await scrape(reader)).toEqual([
      'keel.consumer.handled{jobs} 100',
      'keel.consumer.retried{jobs} 1',
    ]);
    consumer.events.emit('dead-lettered', { message, attempt: 5, error: failure });
    expect(await scrape(reader)).toEqual([
      'keel.consumer.dead_lettered{jobs} 1',
      'keel.consumer.handled{jobs} 100',
      'keel.consumer.retried{jobs} 1',
    ]);
  });

  it('consumers of one destination add up; a disposed one keeps its count and counts no more', async () => {
    const reader = new CollectingReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('keel');
    const broker = new MemoryBroker({ clock: new ManualClock() });
    const first = broker.consumer('jobs', async () => {});
    const second = broker.consumer('jobs', async () => {});
    const other = broker.consumer('mail', async () => {});
    const firstHandle = instrumentConsumer(first, meter, 'jobs');
    using _second = instrumentConsumer(second, meter, 'jobs');
    using _other = instrumentConsumer(other, meter, 'mail');
    first.events.emit('handled', { message, attempt: 1 });
    second.events.emit('handled', { message, attempt: 1 });
    other.events.emit('handled', { message, attempt: 1 });
    expect(await scrape(reader)).toEqual(['keel.consumer.handled{jobs} 2', 'keel.consumer.handled{mail} 1']);

    firstHandle.dispose();
    first.events.emit('handled', { message, attempt: 1 });
    second.events.emit('handled', { message, attempt: 1 });
    expect(await scrape(reader)).toEqual(['keel.consumer.handled{jobs} 3', 'keel.consumer.handled{mail} 1']);
  });
});
