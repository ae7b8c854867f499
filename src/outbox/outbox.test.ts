import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope } from '../messaging/envelope.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { addToOutbox } from './outbox.ts';
import { outboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<TestDb> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...outboxMigrations, { id: 'orders', sql: 'CREATE TABLE orders (id int PRIMARY KEY)' }]);
  return db;
}

const rows = async (db: TestDb): Promise<string[]> =>
  (await db.query<{ id: string }>('SELECT id::text AS id FROM keel_outbox ORDER BY seq')).rows.map(
    (r) => r.id,
  );

describe('outbox.add', () => {
  it('in a keel transaction: the row commits with the business write, and a later statement sees it', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { id: 1 } });
    await db.transaction(async (tx) => {
      await addToOutbox(tx, 'orders', message);
      await tx.query('INSERT INTO orders VALUES (1)');
      const seen = await tx.query('SELECT 1 FROM keel_outbox WHERE id = $1', [message.id]);
      expect(seen.rowCount).toBe(1);
    });
    expect(await rows(db)).toEqual([message.id]);
  });

  it('in a keel transaction: a failed insert (the id already there) rejects the transaction, keeping nothing', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { id: 1 } });
    await db.transaction((tx) => addToOutbox(tx, 'orders', message));
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO orders VALUES (2)');
        // Resolves: the insert went out without waiting; the commit reports it.
        await addToOutbox(tx, 'orders', message);
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await rows(db)).toEqual([message.id]);
    expect((await db.query('SELECT 1 FROM orders')).rowCount).toBe(0);
  });

  it('through a foreign executor: add awaits the insert and rejects with its error', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { id: 1 } });
    await db.transaction((tx) => addToOutbox(tx, 'orders', message));
    await expect(
      db.transaction(async (tx) => {
        const foreign = { query: (sql: string, params: unknown[]) => tx.query(sql, params) };
        await expect(addToOutbox(foreign, 'orders', message)).rejects.toMatchObject({ code: '23505' });
      }),
    ).rejects.toMatchObject({ code: '25P02' });
  });

  it('rejects a bad destination, executor or message naming the field', async () => {
    const message = createEnvelope({ type: 'order.placed.v1', payload: {} });
    await expect(addToOutbox({ query: () => Promise.resolve() }, '', message)).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      details: { field: 'destination' },
    });
    await expect(addToOutbox(null as never, 'orders', message)).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      details: { field: 'tx' },
    });
    await expect(
      addToOutbox({ query: () => Promise.resolve() }, 'orders', [message, { payload: 1 } as never]),
    ).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT', details: { field: 'messages[1].id' } });
    await expect(
      addToOutbox({ query: () => Promise.resolve() }, 'orders', [message, null as never]),
    ).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT', details: { field: 'messages[1]' } });
  });

  it('refuses envelopes the table cannot hold, naming the field, before sending anything', async () => {
    const sent: string[] = [];
    const spy = { query: async (sql: string): Promise<void> => void sent.push(sql) };
    const good = createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { id: 1 } });
    const cases: [unknown, string][] = [
      [{ ...good, id: 'order-1' }, 'messages[0].id'],
      [[good, createEnvelope({ type: 'order.placed.v1', payload: 2 }), good], 'messages[2].id'],
      [{ ...good, type: '' }, 'messages[0].type'],
      [{ ...good, payload: undefined }, 'messages[0].payload'],
      [{ ...good, headers: null }, 'messages[0].headers'],
      [{ ...good, headers: { 'correlation-id': 7 } }, 'messages[0].headers'],
      [{ ...good, key: 42 }, 'messages[0].key'],
      [{ ...good, occurredAt: 'yesterday' }, 'messages[0].occurredAt'],
      [{ ...good, hlc: 5 }, 'messages[0].hlc'],
    ];
    const refused: unknown[] = [];
    for (const [messages, field] of cases) {
      const error = await addToOutbox(spy, 'orders', messages as never).catch((e: unknown) => e);
      refused.push(error);
      expect(error, field).toMatchObject({ code: 'KEEL_INVALID_ARGUMENT', details: { field } });
    }
    expect(sent).toEqual([]);
    expect(String(refused[1])).toMatch(
      /messages\[2\]\.id: expected an id not already in this call \(messages\[0\] has it\)/,
    );
    // null payloads and keys, and no hlc, are fine.
    await addToOutbox(spy, 'orders', { ...good, payload: null, key: null });
    expect(sent).toHaveLength(1);
  });

  it.runIf(process.env.KEEL_DB === 'pg')(
    'a second transaction adding a message of the same key waits for the first to end (pg)',
    async () => {
      const db = await setup();
      const first = createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { n: 1 } });
      const second = createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { n: 2 } });
      const other = createEnvelope({ type: 'order.placed.v1', key: 'o-2', payload: { n: 3 } });
      let finishFirst: () => void = () => undefined;
      let firstAdded: () => void = () => undefined;
      const added = new Promise<void>((resolve) => (firstAdded = resolve));
      const firstTx = db.transaction(async (tx) => {
        await addToOutbox(tx, 'orders', first);
        await tx.query('SELECT 1');
        firstAdded();
        await new Promise<void>((resolve) => (finishFirst = resolve));
      });
      await added;
      // Another key does not wait.
      await db.transaction((tx) => addToOutbox(tx, 'orders', other));
      const secondTx = db.transaction((tx) => addToOutbox(tx, 'orders', second));
      // The second waits on the first's advisory lock until the first commits.
      for (let poll = 1; ; poll++) {
        if (poll > 2000) throw new Error('the second transaction never waited for the key lock');
        // This key's lock (a bigint advisory lock: high and low 32 bits), not another test's.
        const { rowCount } = await db.query(
          `SELECT 1 FROM pg_locks l, (SELECT hashtextextended(current_schema() || ':orders:o-1', 0) AS h) k
           WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 1
             AND l.classid::bigint = ((k.h >> 32) & 4294967295) AND l.objid::bigint = (k.h & 4294967295)`,
        );
        if (rowCount > 0) break;
      }
      expect(await rows(db)).toEqual([other.id]);
      finishFirst();
      await Promise.all([firstTx, secondTx]);
      expect(await rows(db)).toEqual([first.id, other.id, second.id]);
    },
  );
});
