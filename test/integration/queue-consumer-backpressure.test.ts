import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { createTestDb, type TestDb } from '../../src/testing/index.ts';
import { ManualClock, systemClock } from '../../src/time/index.ts';
import { MemoryBroker } from '../../src/messaging/adapters/memory/index.ts';
import { PgQueue } from '../../src/messaging/adapters/postgres/pg-queue.ts';
import { pgQueueMigrations } from '../../src/messaging/adapters/postgres/schema.ts';
import type { MessageBroker } from '../../src/messaging/broker.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import type { QueueConsumer } from '../../src/messaging/queue-consumer.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

function messages(count: number, from: number): Envelope[] {
  return Array.from({ length: count }, (_, i) =>
    createEnvelope({ type: 'job.run.v1', payload: { n: from + i } }),
  );
}

/**
 * Watches what a consumer holds: after every claim (the only way in) and every handler start.
 * Counted, not sampled from the heap: `held` is every message the runtime keeps a reference to.
 */
function watchHeld(consumer: QueueConsumer): { peak: () => number; claims: () => number } {
  let peak = 0;
  let claims = 0;
  consumer.events.on('claimed', ({ held }) => {
    claims++;
    peak = Math.max(peak, held, consumer.stats.held);
  });
  consumer.events.on('handled', () => (peak = Math.max(peak, consumer.stats.held)));
  return { peak: () => peak, claims: () => claims };
}

/** Producers publish `total` messages in bursts far faster than the handler gets through them. */
async function outrun(
  broker: MessageBroker,
  consumer: QueueConsumer,
  total: number,
  tick: () => Promise<void>,
): Promise<number> {
  let handled = 0;
  consumer.events.on('acked', ({ messages: acked }) => (handled += acked.length));
  await consumer.start();
  for (let sent = 0; sent < total; sent += 100) {
    await broker.publish('jobs', messages(100, sent));
    await tick();
  }
  while (handled < total) await tick();
  return handled;
}

describe('backpressure: producers outrun the handler', () => {
  it('memory broker: never more than concurrency + prefetch messages held, however deep the queue', async () => {
    const clock = new ManualClock();
    const broker = new MemoryBroker({ clock });
    const consumer = broker.consumer(
      'jobs',
      // 10 ms per message, 4 at a time: at most 400 a second, while 100 arrive per tick.
      () => new Promise<void>((resolve) => clock.setTimeout(resolve, 10)),
      { concurrency: 4, prefetch: 8, pollIntervalMs: 50 },
    );
    const held = watchHeld(consumer);
    let deepest = 0;
    const handled = await outrun(broker, consumer, 2000, async () => {
      deepest = Math.max(deepest, broker.depth('jobs'));
      await clock.advance(10);
    });
    expect(handled).toBe(2000);
    expect(deepest).toBeGreaterThan(1000);
    expect(held.claims()).toBeGreaterThan(100);
    expect(held.peak()).toBe(12);
    await consumer.stop();
  });

  it('PostgreSQL queue: never more than concurrency + prefetch messages held, however deep the queue', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, pgQueueMigrations);
    const queue = new PgQueue(db, { clock: systemClock });
    const consumer = queue.consumer('jobs', () => new Promise<void>((resolve) => setTimeout(resolve, 1)), {
      concurrency: 4,
      prefetch: 8,
      pollIntervalMs: 50,
    });
    const held = watchHeld(consumer);
    let deepest = 0;
    const handled = await outrun(queue, consumer, 300, async () => {
      deepest = Math.max(deepest, await queue.depth('jobs'));
      await new Promise((resolve) => setTimeout(resolve, 5));
    });
    expect(handled).toBe(300);
    expect(deepest).toBeGreaterThan(100);
    expect(held.peak()).toBeGreaterThan(4);
    expect(held.peak()).toBeLessThanOrEqual(12);
    await consumer.stop();
  });
});
