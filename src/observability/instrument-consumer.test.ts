import type { Attributes, Counter, Meter } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { MemoryBroker } from '../messaging/adapters/memory/index.ts';
import { createEnvelope } from '../messaging/index.ts';
import { ManualClock } from '../time/index.ts';
import { instrumentConsumer } from './instrument-consumer.ts';

/** A meter whose counters record every `add` call. */
function recordingMeter(): {
  meter: Meter;
  adds: { name: string; value: number; attributes?: Attributes }[];
} {
  const adds: { name: string; value: number; attributes?: Attributes }[] = [];
  const meter = {
    createCounter: (name: string): Counter => ({
      add: (value: number, attributes?: Attributes) => adds.push({ name, value, attributes }),
    }),
  } as unknown as Meter;
  return { meter, adds };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('instrumentConsumer', () => {
  it('adds what a turn of the event loop counted in one call per counter, and what is left on dispose', async () => {
    const broker = new MemoryBroker({ clock: new ManualClock() });
    const consumer = broker.consumer('jobs', async () => {});
    const { meter, adds } = recordingMeter();
    const handle = instrumentConsumer(consumer, meter, 'jobs');
    const message = createEnvelope({ type: 'job.run.v1', payload: {} });
    for (let i = 0; i < 100; i++) consumer.events.emit('handled', { message, attempt: 1 });
    consumer.events.emit('retried', { message, attempt: 1, delayMs: 10, error: new Error('x') });
    expect(adds).toEqual([]);
    await nextTurn();
    const by = { 'messaging.destination.name': 'jobs' };
    expect(adds).toEqual([
      { name: 'keel.consumer.handled', value: 100, attributes: by },
      { name: 'keel.consumer.retried', value: 1, attributes: by },
    ]);
    consumer.events.emit('handled', { message, attempt: 1 });
    consumer.events.emit('dead-lettered', { message, attempt: 5, error: new Error('x') });
    handle.dispose();
    expect(adds.slice(2)).toEqual([
      { name: 'keel.consumer.handled', value: 1, attributes: by },
      { name: 'keel.consumer.dead_lettered', value: 1, attributes: by },
    ]);
    // Detached: nothing more is counted.
    consumer.events.emit('handled', { message, attempt: 1 });
    await nextTurn();
    expect(adds).toHaveLength(4);
  });
});
