import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import { createTestDb, testDbBackend, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { inboxOnce, pruneInbox } from './inbox.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { pruneOutbox } from './outbox-retention.ts';
import { outboxStatus } from './outbox-status.ts';
import { inboxMigrations, outboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...outboxMigrations, ...inboxMigrations]);
  return { db, clock: new ManualClock() };
}

const event = (n: number): Envelope => createEnvelope({ type: 'thing.happened.v1', payload: { n } });
const ok = { publish: async (): Promise<void> => undefined };

describe('outbox retention', () => {
  it('deletes published rows past the retention in batches, never unpublished or parked ones', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) =>
      addToOutbox(
        tx,
        'things',
        Array.from({ length: 25 }, (_, i) => event(i)),
      ),
    );
    const relay = new OutboxRelay(db, ok, { clock, batchSize: 20, retentionMs: 3_600_000 });
    expect(await relay.relayOnce()).toBe(20);
    await db.transaction((tx) => addToOutbox(tx, 'things', event(99)));
    await db.query(`UPDATE keel_outbox SET parked_at = $1 WHERE seq = (SELECT max(seq) FROM keel_outbox)`, [
      new Date(clock.now()),
    ]);
    await clock.advance(3_600_001);
    expect(await pruneOutbox(db, { retentionMs: 3_600_000, batchSize: 7, clock })).toBe(20);
    // The 5 unpublished rows and the parked one stay.
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 5, parked: 1, published: 0 });
    // The relay's own cleaner: what it publishes now is young, so nothing goes.
    expect(await relay.relayOnce()).toBe(5);
    expect(await relay.prune()).toBe(0);
    await clock.advance(3_600_001);
    const pruned = relay.events.once('pruned');
    expect(await relay.prune()).toBe(5);
    expect(await pruned).toEqual({ deleted: 5 });
  });

  it('moves a published row to the archive whole, and counts and prunes rows an earlier version marked in place', async () => {
    const { db, clock } = await setup();
    const sent = [event(1), event(2), event(3)];
    await db.transaction((tx) => addToOutbox(tx, 'things', sent));
    expect(await new OutboxRelay(db, ok, { clock, retentionMs: 3_600_000 }).relayOnce()).toBe(3);
    expect((await db.query('SELECT 1 FROM keel_outbox')).rowCount).toBe(0);
    const { rows } = await db.query<{
      id: string;
      destination: string;
      type: string;
      payload: unknown;
      occurred_at: Date;
      attempts: number;
      published_at: Date;
    }>(
      `SELECT id::text AS id, destination, type, payload, occurred_at, attempts, published_at
       FROM keel_outbox_archive ORDER BY seq`,
    );
    expect(rows).toEqual(
      sent.map((m) => ({
        id: m.id,
        destination: 'things',
        type: m.type,
        payload: m.payload,
        occurred_at: new Date(m.occurredAt),
        attempts: 0,
        published_at: new Date(clock.now()),
      })),
    );
    // A relay of an earlier version marks its rows in place instead.
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(4), event(5)]));
    await db.query('UPDATE keel_outbox SET published_at = $1', [new Date(clock.now())]);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 5 });
    await clock.advance(3_600_001);
    expect(await pruneOutbox(db, { retentionMs: 3_600_000, batchSize: 2, clock })).toBe(5);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 0 });
    expect((await db.query('SELECT 1 FROM keel_outbox_archive')).rowCount).toBe(0);
  });

  it('reports backlog size and the age of the oldest unpublished row as numbers', async () => {
    const { db, clock } = await setup();
    expect(await outboxStatus(db, clock)).toEqual({
      backlog: 0,
      parked: 0,
      published: 0,
      oldestUnpublishedAgeMs: 0,
    });
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1), event(2)]));
    const { rows } = await db.query<{ created: Date }>('SELECT min(created_at) AS created FROM keel_outbox');
    const age = clock.now() + 5000 - rows[0]!.created.getTime();
    const later = new ManualClock(clock.now() + 5000);
    expect(await outboxStatus(db, later)).toEqual({
      backlog: 2,
      parked: 0,
      published: 0,
      oldestUnpublishedAgeMs: Math.max(0, age),
    });
  });

  it.skipIf(testDbBackend() === 'pglite')(
    'one cleaner at a time: while another holds the lock, pruning returns at once (pg only)',
    async () => {
      const { db, clock } = await setup();
      await db.transaction((tx) => addToOutbox(tx, 'things', [event(1), event(2)]));
      await new OutboxRelay(db, ok, { clock }).relayOnce();
      await clock.advance(10_000);
      let release: (() => void) | undefined;
      const holder = db.transaction(async (tx) => {
        await tx.query(
          `SELECT pg_advisory_xact_lock(hashtextextended('keel_cleaner:' || current_schema() || ':keel_outbox', 0))`,
        );
        await new Promise<void>((resolve) => (release = resolve));
      });
      while (release === undefined) await new Promise((resolve) => setImmediate(resolve));
      expect(await pruneOutbox(db, { retentionMs: 1000, clock })).toBe(0);
      release();
      await holder;
      expect(await pruneOutbox(db, { retentionMs: 1000, clock })).toBe(2);
    },
  );
});

describe('inbox retention', () => {
  it('prunes records past the retention, in batches', async () => {
    const { db, clock } = await setup();
    for (let i = 0; i < 25; i++) {
      await db.transaction((tx) =>
        inboxOnce(tx, 'c', createEnvelope({ type: 'x.y.v1', payload: i }), async () => 0, { clock }),
      );
      if (i === 19) await clock.advance(3_600_000);
    }
    expect(await pruneInbox(db, { retentionMs: 1_800_000, batchSize: 7, clock })).toBe(20);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM keel_inbox');
    expect(rows[0]?.n).toBe(5);
  });

  it('refuses a retention that does not outlive the retry horizon, naming both', async () => {
    const { db, clock } = await setup();
    await expect(pruneInbox(db, { retentionMs: 60_000, retryHorizonMs: 600_000, clock })).rejects.toThrow(
      /retentionMs: expected more than retryHorizonMs \(600000 ms\)/,
    );
    await expect(pruneInbox(db, { retentionMs: -1 })).rejects.toThrow(/retentionMs/);
    expect(await pruneInbox(db, { retentionMs: 3_600_000, retryHorizonMs: 600_000, clock })).toBe(0);
  });
});
