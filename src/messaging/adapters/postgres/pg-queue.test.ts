import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../../db/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import { PgQueue } from './pg-queue.ts';
import { pgQueueMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock; queue: PgQueue }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, pgQueueMigrations);
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  return { db, clock, queue: new PgQueue(db, { clock }) };
}

function messages(count: number, key?: string): Envelope[] {
  return Array.from({ length: count }, (_, i) =>
    createEnvelope({
      type: 'job.run.v1',
      payload: { n: i },
      key: key ?? null,
      headers: { 'correlation-id': `c${i}` },
    }),
  );
}

describe('PgQueue', () => {
  it('round-trips envelopes: id, type, key, payload, headers, occurredAt', async () => {
    const { queue, clock } = await setup();
    const sent = messages(3, 'k1');
    await queue.publish('jobs', sent);
    const received: Envelope[] = [];
    const consumer = queue.consumer('jobs', async (m) => void received.push(m), { clock, concurrency: 1 });
    await consumer.start();
    while (received.length < 3) await consumer.events.once('acked');
    await consumer.stop();
    expect(received).toEqual(sent);
    expect(await queue.depth('jobs')).toBe(0);
  });

  it('wakes a waiting consumer by NOTIFY, without waiting for the poll', async () => {
    const { queue, clock } = await setup();
    const consumer = queue.consumer('jobs', async () => {}, { clock, pollIntervalMs: 3_600_000 });
    await consumer.start();
    const acked = consumer.events.once('acked');
    await queue.publish('jobs', messages(1));
    await acked;
    await consumer.stop();
  });

  it('publishes inside a transaction only when it commits', async () => {
    const { db, queue } = await setup();
    await db
      .transaction(async (tx) => {
        await queue.publishIn(tx, 'jobs', messages(2));
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await queue.depth('jobs')).toBe(0);
    await db.transaction((tx) => queue.publishIn(tx, 'jobs', messages(2)));
    expect(await queue.depth('jobs')).toBe(2);
  });

  it('retries a failed message after its delay and dead-letters it after maxAttempts with headers', async () => {
    const { queue, clock } = await setup();
    await queue.publish('jobs', messages(1));
    const attempts: number[] = [];
    const consumer = queue.consumer(
      'jobs',
      async (_m, ctx) => {
        attempts.push(ctx.attempt);
        throw new Error('boom');
      },
      { clock, maxAttempts: 3, retryDelay: () => 1000, pollIntervalMs: 100 },
    );
    await consumer.start();
    await advanceUntil(clock, consumer.events.once('dead-lettered'));
    await consumer.stop();
    expect(attempts).toEqual([1, 2, 3]);
    const letters: Envelope[] = [];
    const reader = queue.consumer('jobs.dead-letter', async (m) => void letters.push(m), { clock });
    await reader.start();
    await reader.events.once('acked');
    await reader.stop();
    expect(letters[0]?.headers).toMatchObject({
      'correlation-id': 'c0',
      'x-dead-letter-source': 'jobs',
      'x-dead-letter-error': 'Error: boom',
      'x-dead-letter-attempts': '3',
    });
    const first = Date.parse(letters[0]?.headers['x-dead-letter-first-failed-at'] ?? '');
    const last = Date.parse(letters[0]?.headers['x-dead-letter-last-failed-at'] ?? '');
    // Two retry delays of 1 s lie between the first and the last failure.
    expect(last - first).toBeGreaterThanOrEqual(2000);
    expect(first).toBeGreaterThanOrEqual(Date.UTC(2026, 0, 1));
  });

  it('redelivers a message whose lease expired (a consumer that died) to another consumer', async () => {
    const { queue, clock } = await setup();
    await queue.publish('jobs', messages(1));
    // The first consumer claims and never finishes: it stands for a crashed process.
    const stuck = queue.consumer('jobs', () => new Promise<void>(() => {}), { clock, leaseMs: 5000 });
    const claimed = new Promise<void>((resolve) => {
      const check = (): void => (stuck.inFlight > 0 ? resolve() : void setImmediate(check));
      check();
    });
    await stuck.start();
    await advanceUntil(clock, claimed, { stepMs: 1 });
    const claimedAt = clock.now();
    const seen: number[] = [];
    const healthy = queue.consumer('jobs', async (_m, ctx) => void seen.push(ctx.attempt), {
      clock,
      leaseMs: 5000,
      pollIntervalMs: 1000,
    });
    await healthy.start();
    await advanceUntil(clock, healthy.events.once('acked'));
    expect(seen).toEqual([2]);
    expect(clock.now() - claimedAt).toBeGreaterThanOrEqual(5000);
    await healthy.stop();
    await advanceUntil(clock, stuck.stop({ drainMs: 0 }));
  });

  it('holds delayed messages until they are due', async () => {
    const { queue, clock } = await setup();
    await queue.publish('jobs', messages(1), { availableAt: clock.now() + 60_000 });
    let handled = 0;
    const consumer = queue.consumer('jobs', async () => void handled++, { clock, pollIntervalMs: 1000 });
    await consumer.start();
    const start = clock.now();
    await advanceUntil(clock, consumer.events.once('acked'), { stepMs: 1000 });
    expect(handled).toBe(1);
    expect(clock.now() - start).toBeGreaterThanOrEqual(60_000);
    await consumer.stop();
  });

  it('shares work between competing consumers: every message handled once when nothing fails', async () => {
    const { queue } = await setup();
    const sent = messages(200);
    await queue.publish('jobs', sent);
    const handled = new Map<string, number>();
    const handler = async (m: Envelope): Promise<void> =>
      void handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
    const a = queue.consumer('jobs', handler, { concurrency: 4, pollIntervalMs: 20 });
    const b = queue.consumer('jobs', handler, { concurrency: 4, pollIntervalMs: 20 });
    await Promise.all([a.start(), b.start()]);
    while (handled.size < sent.length) await Promise.race([a.events.once('acked'), b.events.once('acked')]);
    await Promise.all([a.stop(), b.stop()]);
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(await queue.depth('jobs')).toBe(0);
  });

  it('refuses a bad queue name, naming it', async () => {
    const { queue } = await setup();
    await expect(queue.publish('bad name!', messages(1))).rejects.toThrow(
      /destination: expected a queue name/,
    );
  });
});
