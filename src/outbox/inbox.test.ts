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
  await migrate(db, [
    ...inboxMigrations,
    { id: 'effects', sql: 'CREATE TABLE effects (n int); CREATE TABLE failures (n int)' },
  ]);
  return db;
}

const count = async (db: TestDb, table = 'effects'): Promise<number> =>
  (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

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

  it('refuses a message without a UUID id, or a fn that is no function, naming it, before writing', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    const refusals: unknown[] = [];
    await db.transaction(async (tx) => {
      for (const bad of [null, {}, { id: 42 }, { id: 'not-a-uuid' }]) {
        refusals.push(await inboxOnce(tx, 'billing', bad as never, async () => 0).catch((e: unknown) => e));
      }
      refusals.push(await inboxOnce(tx, 'billing', message, 'fn' as never).catch((e: unknown) => e));
      // Nothing was sent: the transaction is still usable.
      await tx.query('INSERT INTO effects VALUES (1)');
    });
    expect(refusals.map((e) => (e as { details?: unknown }).details)).toEqual([
      { field: 'message' },
      { field: 'message.id' },
      { field: 'message.id' },
      { field: 'message.id' },
      { field: 'fn' },
    ]);
    expect(refusals[3]).toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      message: expect.stringMatching(/^message\.id: expected a UUID/) as unknown,
    });
    expect(await count(db)).toBe(1);
    expect(await count(db, 'keel_inbox')).toBe(0);
  });

  it('when fn throws and the caller carries on, neither the record nor fn’s writes stay, and the redelivery runs fn', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    const failing = [
      // A failure in code, after a write.
      async (t: { query: TestDb['query'] }): Promise<never> => {
        await t.query('INSERT INTO effects VALUES (1)');
        throw new Error('out of stock');
      },
      // A failed statement, which aborts the transaction on PostgreSQL: the caller's next
      // statement must still run.
      async (t: { query: TestDb['query'] }): Promise<never> => {
        await t.query('INSERT INTO effects VALUES (1)');
        await t.query('SELECT 1 / 0');
        throw new Error('unreachable');
      },
    ];
    for (const fn of failing) {
      const caught = await db.transaction(async (tx) => {
        const error = await inboxOnce(tx, 'billing', message, fn).catch((e: unknown) => e);
        await tx.query('INSERT INTO failures VALUES (1)');
        return error;
      });
      expect(caught).toMatchObject(fn === failing[0] ? { message: 'out of stock' } : { code: '22012' });
    }
    expect(await count(db)).toBe(0);
    expect(await count(db, 'failures')).toBe(2);
    expect(await count(db, 'keel_inbox')).toBe(0);
    const redelivery = await db.transaction((tx) =>
      inboxOnce(tx, 'billing', message, (t) =>
        t.query('INSERT INTO effects VALUES (1)').then(() => 'applied'),
      ),
    );
    expect(redelivery).toEqual({ duplicate: false, result: 'applied' });
    expect(await count(db)).toBe(1);
  });

  it('takes a foreign transaction (anything with query returning rows) and hands fn that same object', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    const outcomes = await db.transaction(async (tx) => {
      // The shape of a PGlite transaction or a wrapped Kysely one: no keel Tx methods.
      const foreign = {
        query: async (sql: string, params: unknown[]): Promise<{ rows: unknown[] }> => ({
          rows: (await tx.query(sql, params)).rows,
        }),
      };
      const seen: unknown[] = [];
      const run = (): Promise<unknown> =>
        inboxOnce(foreign, 'billing', message, async (t) => {
          seen.push(t);
          await t.query('INSERT INTO effects VALUES ($1)', [1]);
          return 'applied';
        });
      const failed = await inboxOnce(foreign, 'billing', message, async (t) => {
        await t.query('INSERT INTO effects VALUES ($1)', [1]);
        throw new Error('first try fails');
      }).catch((e: unknown) => (e as Error).message);
      return { failed, first: await run(), second: await run(), same: seen.every((t) => t === foreign) };
    });
    expect(outcomes).toEqual({
      failed: 'first try fails',
      first: { duplicate: false, result: 'applied' },
      second: { duplicate: true },
      same: true,
    });
    expect(await count(db)).toBe(1);
  });

  it('refuses the Db itself, where the record and fn would each commit on their own', async () => {
    const db = await setup();
    const message = createEnvelope({ type: 'x.y.v1', payload: {} });
    let ran = false;
    await expect(
      inboxOnce(db, 'billing', message, async () => {
        ran = true;
      }),
    ).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      details: { field: 'tx' },
      message: expect.stringMatching(
        /^tx: expected a transaction \(db\.transaction\(\(tx\) => inbox\.once\(tx, …\)\)\)/,
      ) as unknown,
    });
    expect(ran).toBe(false);
    expect(await count(db, 'keel_inbox')).toBe(0);
  });
});
