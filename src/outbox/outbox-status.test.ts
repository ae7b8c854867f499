import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { retryParked, retryParkedById } from './outbox-status.ts';
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
