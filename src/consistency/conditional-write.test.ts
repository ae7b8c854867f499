import { describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { readVersioned, updateIfVersion, versionedTable } from './conditional-write.ts';
import { VersionConflictError } from './version-conflict-error.ts';

async function accountsDb(): Promise<TestDb> {
  const db = await createTestDb({ schemaPrefix: 'cas' });
  await db.query(`
    CREATE TABLE accounts (id text PRIMARY KEY, owner text NOT NULL, balance integer NOT NULL, version integer NOT NULL DEFAULT 1);
    INSERT INTO accounts (id, owner, balance) VALUES ('a1', 'ada', 100);
  `);
  return db;
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('updateIfVersion', () => {
  it('writes the changes and returns the next version when the version matches', async () => {
    await using db = await accountsDb();
    const version = await db.transaction((tx) => updateIfVersion(tx, 'accounts', 'a1', 1, { balance: 90 }));
    expect(version).toBe(2);
    const { rows } = await db.query('SELECT balance, version FROM accounts');
    expect(rows).toEqual([{ balance: 90, version: 2 }]);
  });

  it('refuses a stale version with VersionConflictError naming table, id and both versions, and writes nothing', async () => {
    await using db = await accountsDb();
    await updateIfVersion(db, 'accounts', 'a1', 1, { balance: 90 });
    const error = await caught(updateIfVersion(db, 'accounts', 'a1', 1, { balance: 10 }));
    expect(error).toBeInstanceOf(VersionConflictError);
    const conflict = error as VersionConflictError;
    expect(conflict.code).toBe('KEEL_VERSION_CONFLICT');
    expect(conflict.status).toBe(409);
    expect({
      table: conflict.table,
      id: conflict.id,
      expected: conflict.expected,
      actual: conflict.actual,
    }).toEqual({ table: 'accounts', id: 'a1', expected: 1, actual: 2 });
    expect(conflict.message).toBe(
      'accounts a1: expected version 1, found 2; another writer changed it since it was read',
    );
    expect(conflict.details).toEqual({ table: 'accounts', id: 'a1', expectedVersion: 1, actualVersion: 2 });
    const { rows } = await db.query('SELECT balance, version FROM accounts');
    expect(rows).toEqual([{ balance: 90, version: 2 }]);
  });

  it('of two writers that read the same version, exactly one wins', async () => {
    await using db = await accountsDb();
    const read = await readVersioned<{ balance: number }>(db, 'accounts', 'a1');
    const results = await Promise.allSettled(
      [5, 7].map((amount) =>
        db.transaction((tx) =>
          updateIfVersion(tx, 'accounts', 'a1', read!.version, { balance: read!.row.balance - amount }),
        ),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toBeInstanceOf(VersionConflictError);
    expect((rejected[0]!.reason as VersionConflictError).actual).toBe(2);
  });

  it('rejects a missing row with KEEL_NOT_FOUND', async () => {
    await using db = await accountsDb();
    const error = await caught(updateIfVersion(db, 'accounts', 'nope', 1, { balance: 1 }));
    expect(isKeelError(error, 'KEEL_NOT_FOUND')).toBe(true);
    expect((error as Error).message).toBe('accounts nope was not found');
  });

  it('binds values as parameters: SQL in a value is stored as text', async () => {
    await using db = await accountsDb();
    const evil = "x'; DROP TABLE accounts; --";
    await updateIfVersion(db, 'accounts', 'a1', 1, { owner: evil });
    const { rows } = await db.query('SELECT owner FROM accounts');
    expect(rows).toEqual([{ owner: evil }]);
  });

  it('refuses names that are not lower-case identifiers, naming the field', async () => {
    await using db = await accountsDb();
    const cases: [() => Promise<unknown>, string][] = [
      [() => updateIfVersion(db, 'accounts; DROP TABLE x', 'a1', 1, {}), 'table'],
      [() => updateIfVersion(db, 'a.b.c', 'a1', 1, {}), 'table'],
      [() => updateIfVersion(db, { table: 'accounts', idColumn: 'Id' }, 'a1', 1, {}), 'idColumn'],
      [() => updateIfVersion(db, { table: 'accounts', versionColumn: 'v"' }, 'a1', 1, {}), 'versionColumn'],
      [
        () => updateIfVersion(db, 'accounts', 'a1', 1, { 'balance = 0, owner': 1 }),
        'changes.balance = 0, owner',
      ],
      [() => updateIfVersion(db, 'accounts', 'a1', 1, { version: 7 }), 'changes.version'],
      [() => updateIfVersion(db, 'accounts', 'a1', 1, { id: 'b2' }), 'changes.id'],
      [() => updateIfVersion(db, 'accounts', 'a1', -1, {}), 'expectedVersion'],
      [() => updateIfVersion(db, 'accounts', 'a1', 1.5, {}), 'expectedVersion'],
      [() => updateIfVersion(db, 'accounts', undefined, 1, {}), 'id'],
    ];
    for (const [call, field] of cases) {
      const error = await caught(call());
      expect(isKeelError(error, 'KEEL_INVALID_ARGUMENT'), field).toBe(true);
      expect((error as { field?: string }).field).toBe(field);
    }
    const { rows } = await db.query('SELECT version FROM accounts');
    expect(rows).toEqual([{ version: 1 }]);
  });

  it('skips undefined values, writes null, and with no changes only claims the next version', async () => {
    await using db = await accountsDb();
    await db.query('ALTER TABLE accounts ALTER COLUMN owner DROP NOT NULL');
    expect(await updateIfVersion(db, 'accounts', 'a1', 1, { owner: null, balance: undefined })).toBe(2);
    expect(await updateIfVersion(db, 'accounts', 'a1', 2, {})).toBe(3);
    const { rows } = await db.query('SELECT owner, balance, version FROM accounts');
    expect(rows).toEqual([{ owner: null, balance: 100, version: 3 }]);
  });

  it('works with a schema-qualified table, other column names and a bigint version', async () => {
    await using db = await accountsDb();
    await db.query(`
      CREATE TABLE docs (doc_id bigint PRIMARY KEY, body jsonb NOT NULL, rev bigint NOT NULL);
      INSERT INTO docs VALUES (7, '{}', 9007199254740990);
    `);
    const docs = versionedTable<{ body: unknown }, number>({
      table: `${db.schema}.docs`,
      idColumn: 'doc_id',
      versionColumn: 'rev',
    });
    const read = await docs.read(db, 7);
    expect(read?.version).toBe(9007199254740990);
    const next = await db.transaction((tx) =>
      docs.update(tx, 7, read!.version, { body: JSON.stringify({ title: 'new' }) }),
    );
    expect(next).toBe(9007199254740991);
    expect(await docs.read(db, 7)).toEqual({
      version: 9007199254740991,
      row: { doc_id: '7', body: { title: 'new' }, rev: '9007199254740991' },
    });
    expect(await docs.read(db, 8)).toBeUndefined();
  });

  it('versionedTable checks its names when it is built, not at the first write', () => {
    expect(() => versionedTable({ table: 'accounts', idColumn: 'version' })).toThrow(/versionColumn/);
    expect(() => versionedTable('Accounts')).toThrow(/^table: expected a lower-case SQL identifier/);
  });
});
