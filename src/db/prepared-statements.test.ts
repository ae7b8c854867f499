import { afterEach, describe, expect, it } from 'vitest';
import { createTestDb, testDbBackend, type TestDb } from '../testing/db.ts';
import { openPgDb } from './pg-db.ts';
import { preparedStatement, preparedStatementName } from './prepared-statements.ts';
import { defaultDatabaseUrl } from './open-db.ts';

const insert = preparedStatement('INSERT INTO prepared_t (n) VALUES ($1)');
const sessionStatements = "SELECT name FROM pg_prepared_statements WHERE name LIKE 'keel\\_%'";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((db) => db.close()));
});

describe('preparedStatement', () => {
  it('names each registered text once, and nothing else', () => {
    const name = preparedStatementName(insert);
    expect(name).toMatch(/^keel_\d+$/);
    expect(preparedStatement('INSERT INTO prepared_t (n) VALUES ($1)')).toBe(insert);
    expect(preparedStatementName(insert)).toBe(name);
    expect(preparedStatementName('SELECT 1')).toBeUndefined();
  });

  it('runs registered statements in and out of transactions, on either backend', async () => {
    const db: TestDb = await createTestDb({ schemaPrefix: 'prep' });
    open.push(db);
    await db.query('CREATE TABLE prepared_t (n integer NOT NULL)');
    await db.query(insert, [1]);
    await db.transaction(async (tx) => {
      await tx.query(insert, [2]);
      await tx.query(insert, [3]);
    });
    // A rolled-back transaction leaves the statement usable (prepared statements are not transactional).
    await expect(
      db.transaction(async (tx) => {
        await tx.query(insert, [4]);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    // A failing execution (a NULL into NOT NULL) leaves it usable too.
    await expect(db.query(insert, [null])).rejects.toMatchObject({ code: '23502' });
    await db.query(insert, [5]);
    const { rows } = await db.query<{ n: number }>('SELECT n FROM prepared_t ORDER BY n');
    expect(rows.map((r) => r.n)).toEqual([1, 2, 3, 5]);
  });

  it('rejects a failed execution inside a transaction with the server error, its stack leading to the caller', async () => {
    const db: TestDb = await createTestDb({ schemaPrefix: 'prep' });
    open.push(db);
    await db.query('CREATE TABLE prepared_t (n integer NOT NULL)');
    const error = await db
      .transaction(async (tx) => {
        await tx.query(insert, [null]);
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '23502' });
    // Not only the driver's frames: the callback that sent the statement.
    expect((error as Error).stack).toContain('prepared-statements.test.ts');
    await db.transaction((tx) => tx.query(insert, [6]));
    expect((await db.query('SELECT n FROM prepared_t')).rows).toEqual([{ n: 6 }]);
  });

  it.skipIf(testDbBackend() !== 'pg')(
    'is prepared once per connection on PostgreSQL, and not at all with preparedStatements off (pg pass only)',
    async () => {
      const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;
      const schema = `prep_${process.pid}_${Date.now()}`;
      const on = await openPgDb({ url, schema, poolSize: 1 });
      open.push(on);
      await on.query('CREATE TABLE prepared_t (n integer NOT NULL)');
      await on.transaction(async (tx) => {
        // Before the first Parse on this connection, pipelined twice: one Parse, two executions.
        await Promise.all([tx.query(insert, [1]), tx.query(insert, [2])]);
        const { rows } = await tx.query<{ name: string }>(sessionStatements);
        expect(rows).toEqual([{ name: preparedStatementName(insert) }]);
      });
      // A column added after the statement was prepared: the server plans it again, the insert works.
      await on.query('ALTER TABLE prepared_t ADD COLUMN note text');
      await on.query(insert, [3]);
      expect((await on.query('SELECT n FROM prepared_t')).rowCount).toBe(3);

      const off = await openPgDb({ url, schema, poolSize: 1, preparedStatements: false });
      open.push(off);
      await off.transaction(async (tx) => {
        await tx.query(insert, [4]);
        expect((await tx.query(sessionStatements)).rows).toEqual([]);
      });
      await on.query(`DROP SCHEMA ${schema} CASCADE`);
    },
  );
});
