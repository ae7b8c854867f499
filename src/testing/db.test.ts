import { describe, expect, it } from 'vitest';
import { PgliteDb } from '../db/pglite-db.ts';
import { createTempPgliteDir, createTestDb, testDbBackend, uniqueSchemaName } from './db.ts';

describe('testDbBackend', () => {
  it('reads KEEL_DB, defaulting to pglite, and rejects anything else naming the variable', () => {
    expect(testDbBackend({})).toBe('pglite');
    expect(testDbBackend({ KEEL_DB: 'pglite' })).toBe('pglite');
    expect(testDbBackend({ KEEL_DB: 'pg' })).toBe('pg');
    expect(() => testDbBackend({ KEEL_DB: 'postgres' })).toThrow(/KEEL_DB: expected 'pglite' or 'pg'/);
  });
});

describe('uniqueSchemaName', () => {
  it('gives distinct lower-case identifiers', () => {
    const names = new Set(Array.from({ length: 100 }, () => uniqueSchemaName('Outbox')));
    expect(names.size).toBe(100);
    for (const name of names) expect(name).toMatch(/^outbox_\d+_\d+_[0-9a-f]{8}$/);
  });
});

describe('createTestDb', () => {
  it('gives each test database its own schema on the chosen backend', async () => {
    await using a = await createTestDb();
    await using b = await createTestDb({ schemaPrefix: 'other' });
    expect(a.backend).toBe(testDbBackend());
    expect(a.dialect).toBe(testDbBackend());
    expect(b.schema.startsWith('other_')).toBe(true);
    await a.query('CREATE TABLE only_in_a (id int)');
    await expect(b.query('SELECT * FROM only_in_a')).rejects.toMatchObject({ code: '42P01' });
  });

  it.skipIf(testDbBackend() !== 'pglite')(
    'shares one PGlite instance per test file unless isolated (PGlite pass only)',
    async () => {
      await using a = await createTestDb();
      await using b = await createTestDb();
      await using c = await createTestDb({ isolated: true });
      const instance = (db: { inner: unknown }): unknown => (db.inner as PgliteDb).pglite;
      expect(a.inner).toBeInstanceOf(PgliteDb);
      expect(instance(a)).toBe(instance(b));
      expect(instance(c)).not.toBe(instance(a));
      // One connection: a query on b inside a transaction of a would wait forever, so it is refused.
      await expect(a.transaction(async () => b.query('SELECT 1'))).rejects.toMatchObject({
        code: 'KEEL_DB_IN_TRANSACTION',
      });
      expect((await a.transaction(async () => c.query('SELECT 1 AS one'))).rows).toEqual([{ one: 1 }]);
    },
  );
});

describe('createTempPgliteDir', () => {
  it.skipIf(testDbBackend() !== 'pglite')(
    'opens a file-backed database that keeps its data, and removes the directory (PGlite pass only)',
    async () => {
      const dir = await createTempPgliteDir();
      const db = await dir.open();
      await db.query('CREATE TABLE kept (v text); INSERT INTO kept VALUES ($$x$$)');
      await db.close();
      const again = await dir.open();
      expect((await again.query('SELECT v FROM kept')).rows).toEqual([{ v: 'x' }]);
      await again.close();
      await dir.remove();
      await expect(import('node:fs/promises').then((fs) => fs.stat(dir.path))).rejects.toMatchObject({
        code: 'ENOENT',
      });
    },
  );
});
