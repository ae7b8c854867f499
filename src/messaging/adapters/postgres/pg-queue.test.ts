import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../../db/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import { LeaseLostError } from '../../handler.ts';
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

/** Resolves once `condition` holds, looking after every turn of the event loop. */
function waitUntil(condition: () => boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    const check = (): void => (condition() ? resolve() : void setImmediate(check));
    check();
  });
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
    // A consumer that claims and then dies: no handler finishes, no renewal comes.
    const crashed = queue.source('jobs', { clock, leaseMs: 5000 });
    await crashed.open(() => undefined);
    expect(await crashed.claim(1)).toHaveLength(1);
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
    await crashed.close();
  });

  it('keeps the lease of a handler three times slower than it: delivered exactly once, a rival polling all along', async () => {
    const { queue, clock } = await setup();
    await queue.publish('jobs', messages(1));
    const attempts: string[] = [];
    const slow = queue.consumer(
      'jobs',
      async (_m, ctx) => {
        attempts.push(`slow ${ctx.attempt}`);
        await new Promise<void>((resolve) => clock.setTimeout(resolve, 9000));
      },
      { clock, leaseMs: 3000 },
    );
    await slow.start();
    await advanceUntil(
      clock,
      waitUntil(() => slow.inFlight === 1),
      { stepMs: 1 },
    );
    // The rival claims (and reaps expired leases) every 100 ms: a lapse would hand it the message.
    const rival = queue.consumer('jobs', async (_m, ctx) => void attempts.push(`rival ${ctx.attempt}`), {
      clock,
      leaseMs: 3000,
      pollIntervalMs: 100,
    });
    await rival.start();
    const startedAt = clock.now();
    // Small steps: each lets real I/O (a renewal) finish before much time passes on the clock.
    await advanceUntil(clock, slow.events.once('acked'), { stepMs: 2 });
    expect(clock.now() - startedAt).toBeGreaterThanOrEqual(9000);
    expect(attempts).toEqual(['slow 1']);
    expect(await queue.depth('jobs')).toBe(0);
    await rival.stop();
    await slow.stop();
  });

  it('aborts a stalled handler whose lease another consumer took, and applies nothing of it', async () => {
    const { db, queue, clock } = await setup();
    // Two processes, two clocks: the stalled one's stands still (no renewal fires) while the
    // other's moves past the lease.
    const otherClock = new ManualClock(clock.now());
    const other = new PgQueue(db, { clock: otherClock });
    await queue.publish('jobs', messages(1));
    const reasons: unknown[] = [];
    const stalled = queue.consumer(
      'jobs',
      (_m, { signal }) =>
        new Promise<void>((_resolve, reject) =>
          signal.addEventListener('abort', () => {
            reasons.push(signal.reason);
            reject(signal.reason as Error);
          }),
        ),
      { clock, leaseMs: 3000 },
    );
    const settled: string[] = [];
    for (const event of ['acked', 'retried', 'released', 'dead-lettered'] as const) {
      stalled.events.on(event, () => settled.push(event));
    }
    await stalled.start();
    await advanceUntil(
      clock,
      waitUntil(() => stalled.inFlight === 1),
      { stepMs: 1 },
    );

    const attempts: number[] = [];
    // The taker's own lease outlasts the steps its clock takes while its ack is on the way to
    // the database: with 3 s, a loaded machine let it expire and the taker claimed again.
    const taker = other.consumer('jobs', async (_m, ctx) => void attempts.push(ctx.attempt), {
      leaseMs: 60_000,
      pollIntervalMs: 500,
    });
    await taker.start();
    await advanceUntil(otherClock, taker.events.once('acked'));
    expect(attempts).toEqual([2]);

    // The stalled process wakes up: its next renewal finds the message gone to another consumer.
    const lost = stalled.events.once('lease-lost');
    await advanceUntil(clock, lost);
    expect((await lost).error.reason).toBe('taken');
    expect(reasons[0]).toBeInstanceOf(LeaseLostError);
    expect(reasons[0]).toMatchObject({ code: 'KEEL_LEASE_LOST' });
    await advanceUntil(
      clock,
      waitUntil(() => stalled.inFlight === 0),
    );
    expect(settled).toEqual([]);
    expect(await queue.depth('jobs')).toBe(0);
    await taker.stop();
    await stalled.stop();
  });

  it('fences settles by the claim: an ack, retry, dead-letter or release after the lease was taken changes nothing', async () => {
    const { queue, clock } = await setup();
    await queue.publish('jobs', messages(1));
    const first = queue.source('jobs', { clock, leaseMs: 1000 });
    const second = queue.source('jobs', { clock, leaseMs: 1000 });
    await first.open(() => undefined);
    await second.open(() => undefined);
    const [stale] = await first.claim(1);
    await clock.advance(1000);
    const [current] = await second.claim(1);
    expect(current?.attempt).toBe(2);
    expect(await first.ack([stale!])).toEqual([stale]);
    // Each settle says it held nothing, so the consumer reports the lease lost, not the settle.
    expect(await first.retry(stale!, 0, new Error('late'))).toBe(false);
    expect(await first.deadLetter(stale!, new Error('late'))).toBe(false);
    expect(await first.release(stale!)).toBe(false);
    expect(await queue.depth('jobs.dead-letter')).toBe(0);
    expect(await first.extend([stale!])).toEqual([stale]);
    // Even the same consumer, claiming the message again, cannot settle it with an older claim.
    expect(await second.extend([current!])).toEqual([]);
    expect(await queue.depth('jobs')).toBe(1);
    expect(await second.ack([current!])).toEqual([]);
    expect(await queue.depth('jobs')).toBe(0);
    await first.close();
    await second.close();
  });

  it('holds delayed messages until they are due', async () => {
    const { queue, clock } = await setup();
    await queue.publish('jobs', messages(1), { availableAt: clock.now() + 60_000 });
    let handled = 0;
    // The clock races ahead a second per step while a claim or an ack is on the wire: a lease
    // far beyond the test's minute keeps a slow ack (a loaded CI machine) from expiring the lease
    // and redelivering — this test is about the delay, not about leases.
    const consumer = queue.consumer('jobs', async () => void handled++, {
      clock,
      pollIntervalMs: 1000,
      leaseMs: 3_600_000,
    });
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
