import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope } from '../messaging/envelope.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { inboxOnce } from './inbox.ts';
import { inboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<TestDb> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...inboxMigrations, { id: 'effects', sql: 'CREATE TABLE effects (n int)' }]);
  return db;
}

const count = async (db: TestDb): Promise<number> =>
  (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM effects')).rows[0]!.n;

describe('inbox', () => {
  it('runs the effect once per (consumer, message) and reports a redelivery as a duplicate', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    const effect = (tx: { query: TestDb['query'] }): Promise<string> =>
      tx.query('INSERT INTO effects VALUES (1)').then(() => 'done');
    const first = await db.transaction((tx) => inboxOnce(tx, 'billing', message, effect));
    const second = await db.transaction((tx) => inboxOnce(tx, 'billing', message, effect));
    const otherConsumer = await db.transaction((tx) => inboxOnce(tx, 'shipping', message, effect));
    expect(first).toEqual({ duplicate: false, result: 'done' });
    expect(second).toEqual({ duplicate: true });
    expect(otherConsumer).toEqual({ duplicate: false, result: 'done' });
    expect(await count(db)).toBe(2);
  });

  it('forgets the record when the effect rolls back, so the retry runs it', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    await expect(
      db.transaction((tx) =>
        inboxOnce(tx, 'billing', message, async (t) => {
          await t.query('INSERT INTO effects VALUES (1)');
          throw new Error('handler failed after its write');
        }),
      ),
    ).rejects.toThrow('handler failed');
    expect(await count(db)).toBe(0);
    const retry = await db.transaction((tx) =>
      inboxOnce(tx, 'billing', message, (t) => t.query('INSERT INTO effects VALUES (1)')),
    );
    expect(retry.duplicate).toBe(false);
    expect(await count(db)).toBe(1);
  });

  it('concurrent deliveries of one message apply the effect once', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () =>
        db.transaction((tx) =>
          inboxOnce(tx, 'billing', message, (t) => t.query('INSERT INTO effects VALUES (1)')),
        ),
      ),
    );
    expect(outcomes.filter((o) => !o.duplicate)).toHaveLength(1);
    expect(await count(db)).toBe(1);
  });

  it('refuses a bad consumer name, naming it', async () => {
    const db = await setup();
    await expect(inboxOnce(db, 'bad name!', { id: 'x' }, async () => 0)).rejects.toThrow(
      /consumer: expected/,
    );
  });
});
