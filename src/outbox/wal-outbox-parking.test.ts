import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { retryParked } from './outbox-status.ts';
import { outboxMigrations } from './schema.ts';
import { holdWalOutboxMessages, parkWalOutboxMessage } from './wal-outbox-parking.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; relay: OutboxRelay; sent: Envelope[] }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, outboxMigrations);
  const sent: Envelope[] = [];
  const relay = new OutboxRelay(
    db,
    { publish: async (_d, messages) => void sent.push(...messages) },
    {
      clock: new ManualClock(),
    },
  );
  return { db, relay, sent };
}

const event = (n: number): Envelope =>
  createEnvelope({ type: 'thing.happened.v1', key: 'k', payload: { n } });
const failure = { attempts: 3, error: 'Error: refused', now: new Date(0) };
const rows = async (db: TestDb): Promise<number> => (await db.query('SELECT 1 FROM keel_outbox')).rowCount;

// A WAL outbox relay that dies after parking or holding a message, before it confirms its place
// in the WAL, reads the message again when it restarts, and parks or holds it again.
describe('the WAL outbox relay parking and holding messages in the table', () => {
  it('parks a message once, also after it was retried and published', async () => {
    const { db, relay, sent } = await setup();
    const message = event(1);
    await parkWalOutboxMessage(db, 'things', message, failure);
    await parkWalOutboxMessage(db, 'things', message, failure);
    expect(await rows(db)).toBe(1);
    expect(await retryParked(db)).toBe(1);
    expect(await relay.relayOnce()).toBe(1);
    expect(sent.map((m) => m.id)).toEqual([message.id]);
    await parkWalOutboxMessage(db, 'things', message, failure);
    expect(await rows(db)).toBe(0);
    expect(await relay.relayOnce()).toBe(0);
  });

  it('holds a message once, also after the table relay published it', async () => {
    const { db, relay, sent } = await setup();
    const held = [event(1), event(2)];
    await holdWalOutboxMessages(db, 'things', held);
    await holdWalOutboxMessages(db, 'things', held);
    expect(await rows(db)).toBe(2);
    expect(await relay.relayOnce()).toBe(2);
    await holdWalOutboxMessages(db, 'things', [...held, event(3)]);
    expect(await rows(db)).toBe(1);
    expect(await relay.relayOnce()).toBe(1);
    expect(sent.map((m) => m.payload)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
  });
});
