// QueueConsumer.health() over the PostgreSQL queue: its claims, renewals and acks are statements.
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db } from '../../../db/index.ts';
import type { ServiceHealth } from '../../../service/index.ts';
import { advanceUntil, createTestDb, testDbBackend, type TestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope } from '../../envelope.ts';
import { flakyDb } from '../../../testing/index.ts';
import { backendWaitingOnLock, namedPgDb } from './pg-health-test-support.ts';
import { PgQueue } from './pg-queue.ts';
import { pgQueueMigrations } from './schema.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, pgQueueMigrations);
  return { db, clock: new ManualClock() };
}

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

function job(n: number): ReturnType<typeof createEnvelope> {
  return createEnvelope({ type: 'job.run.v1', payload: { n } });
}

describe('QueueConsumer.health() on the PostgreSQL queue', () => {
  it('is failing while its claims fail, naming the broker, and ok again once one succeeds', async () => {
    const { db, clock } = await setup();
    const link = flakyDb(db);
    const consumer = new PgQueue(link.db, { clock }).consumer('jobs', async () => undefined, {
      clock,
      pollIntervalMs: 100,
    });
    cleanups.push(() => consumer.stop({ drainMs: 1000 }));
    expect(consumer.health()).toEqual({ status: 'not-running', state: 'idle' });
    await consumer.start();
    expect(consumer.health()).toMatchObject({ status: 'ok' });

    link.cut();
    const claimFailed = consumer.events.once('error', { filter: (e) => e.during === 'claim' });
    await advanceUntil(clock, claimFailed, { stepMs: 10 });
    expect(failing(consumer.health())).toMatchObject({
      dependency: 'broker',
      during: 'claim',
      lastError: { code: 'KEEL_DB_UNAVAILABLE' },
    });

    link.restore();
    await new PgQueue(db, { clock }).publish('jobs', [job(1)]);
    await advanceUntil(clock, consumer.events.once('acked'), { stepMs: 10 });
    expect(consumer.health()).toMatchObject({ status: 'ok' });
    await consumer.stop();
    expect(consumer.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it.skipIf(testDbBackend() !== 'pg')(
    'on PostgreSQL: failing while a renewal waits on a row lock past lease + poll, and when the server ends it; ok once a call answers (pg only)',
    async () => {
      const { db, clock } = await setup();
      const applicationName = `keel-consumer-health-${process.pid}`;
      const consumerDb: Db = await namedPgDb(db.schema, applicationName);
      cleanups.push(() => consumerDb.close());
      const queue = new PgQueue(consumerDb, { clock });
      let handling: (() => void) | undefined;
      const consumer = queue.consumer(
        'jobs',
        // The first delivery waits (until its lease is lost); a redelivery is handled at once.
        (_message, ctx) =>
          handling !== undefined
            ? Promise.resolve()
            : new Promise<void>((resolve) => {
                handling = resolve;
                ctx.signal.addEventListener('abort', () => resolve());
              }),
        // One slot and no prefetch: while it handles, the renewals are its only calls.
        { clock, leaseMs: 3000, pollIntervalMs: 100, prefetch: 0 },
      );
      cleanups.push(() => consumer.stop({ drainMs: 1000 }));
      await consumer.start();
      await queue.publish('jobs', [job(1)]);
      await advanceUntil(
        clock,
        (async () => {
          while (handling === undefined) await new Promise((resolve) => setImmediate(resolve));
        })(),
        { stepMs: 10 },
      );
      const health = consumer.health();
      if (health.status !== 'ok' || health.lastContactAt === undefined) throw new Error('expected a contact');

      // Another session holds the message's row, so the next renewal waits for it.
      let release: () => void = () => undefined;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked: () => void = () => undefined;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const holder = db.transaction(async (tx) => {
        await tx.query("SELECT 1 FROM keel_queue WHERE queue = 'jobs' FOR UPDATE");
        locked();
        await released;
      });
      await isLocked;
      await clock.advance(1000);
      const pid = await backendWaitingOnLock(db, applicationName);
      expect(consumer.health()).toMatchObject({ status: 'ok' });
      await clock.advance(health.lastContactAt + 3100 + 1 - clock.now());
      expect(consumer.health()).toMatchObject({ status: 'failing', dependency: 'broker', failures: 0 });

      const renewalFailed = consumer.events.once('error', { filter: (e) => e.during === 'heartbeat' });
      await db.query('SELECT pg_terminate_backend($1)', [pid]);
      await renewalFailed;
      expect(failing(consumer.health())).toMatchObject({
        dependency: 'broker',
        during: 'heartbeat',
        failures: 1,
      });

      release();
      await holder;
      // Its lease ran out while the renewal waited: the message is given up, and the next claim answers.
      const recovered = (async () => {
        while (consumer.health().status !== 'ok') await new Promise((resolve) => setImmediate(resolve));
      })();
      await advanceUntil(clock, recovered, { stepMs: 10 });
      expect(consumer.health()).toMatchObject({ status: 'ok' });
      await consumer.stop();
    },
  );
});
