import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { outboxBacklog, outboxStatus, retryParked, retryParkedById } from './outbox-status.ts';
import { outboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<TestDb> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, outboxMigrations);
  return db;
}

const event = (n: number): Envelope => createEnvelope({ type: 'thing.happened.v1', payload: { n } });

describe('retrying parked rows', () => {
  it('refuses an id that is no UUID, naming it, instead of failing in SQL', async () => {
    const db = await setup();
    await expect(retryParked(db, ['01a25253-78a0-7611-a2f5-72a0173e8861', 'order-1'])).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      details: { field: 'ids[1]' },
    });
    await expect(retryParkedById(db, ['order-1'])).rejects.toMatchObject({ details: { field: 'ids[0]' } });
  });

  it('by id: retries the parked ones and says why each other one was not', async () => {
    const db = await setup();
    const clock = new ManualClock();
    const [published, parked, waiting] = [event(1), event(2), event(3)];
    await db.transaction((tx) => addToOutbox(tx, 'things', published));
    await new OutboxRelay(db, { publish: async () => undefined }, { clock }).relayOnce();
    await db.transaction((tx) => addToOutbox(tx, 'things', [parked, waiting]));
    await db.query(`UPDATE keel_outbox SET parked_at = now(), attempts = 10 WHERE id = $1`, [parked.id]);
    const missing = event(4).id;
    expect(await retryParkedById(db, [parked.id, waiting.id, published.id, missing, parked.id])).toEqual({
      retried: [parked.id],
      notRetried: [
        { id: waiting.id, state: 'unpublished' },
        { id: published.id, state: 'published' },
        { id: missing, state: 'missing' },
      ],
    });
    const { rows } = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM keel_outbox WHERE parked_at IS NULL AND attempts = 0',
    );
    expect(rows[0]?.n).toBe(2);
    // Retried already: a second run finds it waiting to be published.
    expect(await retryParkedById(db, [parked.id.toUpperCase()])).toEqual({
      retried: [],
      notRetried: [{ id: parked.id.toUpperCase(), state: 'unpublished' }],
    });
  });
});

describe('outboxStatus', () => {
  /** `n` published rows in the archive, as the relay leaves them. */
  async function archive(db: TestDb, n: number): Promise<void> {
    await db.query(
      `INSERT INTO keel_outbox_archive
       SELECT g, gen_random_uuid(), 'things', 'thing.happened.v1', NULL, '{}', '{}', now(), NULL,
              now(), 1, NULL, now()
       FROM generate_series(1, $1::int) AS g`,
      [n],
    );
  }

  it('counts the archive exactly by default; estimates it, null while unknown, when asked', async () => {
    const db = await setup();
    const clock = new ManualClock();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1), event(2)]));
    await archive(db, 500);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 2, parked: 0, published: 500 });
    const { rows } = await db.query<{ v: number }>(`SELECT current_setting('server_version_num')::int AS v`);
    // Before the first ANALYZE PostgreSQL 14+ knows nothing of the table's size.
    if (rows[0]!.v >= 140000) {
      expect(await outboxStatus(db, clock, { published: 'estimate' })).toMatchObject({
        backlog: 2,
        published: null,
      });
    }
    await db.query('ANALYZE keel_outbox_archive');
    expect(await outboxStatus(db, clock, { published: 'estimate' })).toMatchObject({
      backlog: 2,
      published: 500,
    });
    await expect(outboxStatus(db, clock, { published: 'roughly' as 'estimate' })).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      details: { field: 'published' },
    });
  });

  it('reads for the metrics, and estimates, without a scan of the archive', async () => {
    const db = await setup();
    const clock = new ManualClock();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1), event(2), event(3)]));
    await db.query(`UPDATE keel_outbox SET parked_at = now() WHERE seq = (SELECT min(seq) FROM keel_outbox)`);
    await archive(db, 50);
    await db.query('ANALYZE keel_outbox_archive');
    const statements: string[] = [];
    const recording = {
      query: ((sql: string, params?: readonly unknown[]) => {
        statements.push(sql);
        return db.query(sql, params);
      }) as TestDb['query'],
    };
    await db.query('UPDATE keel_outbox SET created_at = $1', [new Date(clock.now())]);
    await clock.advance(5000);
    expect(await outboxBacklog(recording, clock)).toEqual({
      backlog: 2,
      parked: 1,
      oldestUnpublishedAgeMs: 5000,
    });
    expect((await outboxStatus(recording, clock, { published: 'estimate' })).published).toBe(50);
    expect(statements).toHaveLength(2);
    for (const sql of statements) {
      const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`);
      expect(rows.map((row) => row['QUERY PLAN']).join('\n')).not.toMatch(/on keel_outbox_archive/);
    }
  });
});
