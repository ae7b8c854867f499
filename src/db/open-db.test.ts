import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTempPgliteDir, testDbBackend } from '../testing/db.ts';
import { dbConfigFromEnv, defaultDatabaseUrl, openDb } from './open-db.ts';

describe('dbConfigFromEnv', () => {
  it('defaults to PGlite in ./.keel/pglite', () => {
    expect(dbConfigFromEnv({})).toEqual({
      kind: 'pglite',
      dataDir: path.join('.keel', 'pglite'),
      schema: 'public',
    });
  });

  it('reads KEEL_DATA_DIR, KEEL_DB_SCHEMA, and memory://', () => {
    expect(dbConfigFromEnv({ KEEL_DATA_DIR: '/var/lib/shop', KEEL_DB_SCHEMA: 'shop' })).toEqual({
      kind: 'pglite',
      dataDir: '/var/lib/shop/pglite',
      schema: 'shop',
    });
    expect(dbConfigFromEnv({ KEEL_DATA_DIR: 'memory://' })).toMatchObject({ dataDir: 'memory://' });
  });

  it('reads KEEL_DB=pg with DATABASE_URL, defaulting to the local server', () => {
    expect(dbConfigFromEnv({ KEEL_DB: 'pg' })).toEqual({
      kind: 'pg',
      url: defaultDatabaseUrl,
      schema: 'public',
      preparedStatements: true,
    });
    expect(dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_PREPARED: 'off' })).toMatchObject({
      preparedStatements: false,
    });
    expect(dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_POOL_SIZE: '20', KEEL_DB_POOL_MIN: '2' })).toMatchObject({
      poolSize: 20,
      poolMin: 2,
    });
    expect(dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_QUERY_TIMEOUT_MS: '30000' })).toMatchObject({
      queryTimeoutMs: 30_000,
    });
    expect(dbConfigFromEnv({ KEEL_DB: 'pg' })).not.toHaveProperty('queryTimeoutMs');
    expect(dbConfigFromEnv({ KEEL_DB: 'pg', DATABASE_URL: 'postgresql://u:p@db:6543/shop' })).toMatchObject({
      url: 'postgresql://u:p@db:6543/shop',
    });
  });

  it('rejects bad values naming the variable, without echoing a password', () => {
    expect(() => dbConfigFromEnv({ KEEL_DB: 'sqlite' })).toThrow(
      /KEEL_DB: expected 'pglite' or 'pg', got "sqlite"/,
    );
    expect(() => dbConfigFromEnv({ KEEL_DB_SCHEMA: 'My Schema' })).toThrow(/KEEL_DB_SCHEMA/);
    expect(() => dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_PREPARED: 'yes' })).toThrow(
      /KEEL_DB_PREPARED: expected 'on' or 'off', got "yes"/,
    );
    expect(() => dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_POOL_SIZE: '0' })).toThrow(
      /^KEEL_DB_POOL_SIZE: expected a whole number of at least 1, got "0"/,
    );
    expect(() => dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_QUERY_TIMEOUT_MS: '0' })).toThrow(
      /^KEEL_DB_QUERY_TIMEOUT_MS: expected a whole number of at least 1, got "0"/,
    );
    expect(() => dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_POOL_MIN: '1.5' })).toThrow(
      /^KEEL_DB_POOL_MIN: expected/,
    );
    expect(() => dbConfigFromEnv({ KEEL_DB: 'pg', KEEL_DB_POOL_SIZE: '4', KEEL_DB_POOL_MIN: '5' })).toThrow(
      /^KEEL_DB_POOL_MIN: expected at most the pool size \(4\), got 5/,
    );
    let message = '';
    try {
      dbConfigFromEnv({ KEEL_DB: 'pg', DATABASE_URL: 'mysql://root:hunter2@db/shop' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^DATABASE_URL: expected a postgres:/);
    expect(message).not.toContain('hunter2');
  });
});

describe('openDb', () => {
  it.skipIf(testDbBackend() !== 'pglite')('opens PGlite in a data directory (PGlite pass only)', async () => {
    await using dir = await createTempPgliteDir();
    // Seeded from the harness's initdb template: openDb then opens an existing database, as on a restart.
    await (await dir.open()).close();
    const db = await openDb({ kind: 'pglite', dataDir: dir.path, schema: 'shop' });
    expect(db.dialect).toBe('pglite');
    expect(db.schema).toBe('shop');
    expect((await db.query<{ s: string }>('SELECT current_schema() AS s')).rows).toEqual([{ s: 'shop' }]);
    await db.close();
  });

  it.skipIf(testDbBackend() !== 'pg')('opens a pg pool (pg pass only)', async () => {
    const db = await openDb({ kind: 'pg', url: process.env.DATABASE_URL?.trim() || defaultDatabaseUrl });
    expect(db.dialect).toBe('pg');
    expect((await db.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await db.close();
  });

  it('rejects a pg option of the wrong type naming it, before connecting', async () => {
    const url = 'postgres://nobody@127.0.0.1:1/none';
    await expect(
      openDb({ kind: 'pg', url, checkNestedUse: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT', field: 'checkNestedUse' });
    await expect(
      openDb({ kind: 'pg', url, preparedStatements: 1 as unknown as boolean }),
    ).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT', field: 'preparedStatements' });
  });

  it('rejects an unknown kind naming the field', async () => {
    await expect(openDb({ kind: 'mysql' } as unknown as Parameters<typeof openDb>[0])).rejects.toMatchObject({
      field: 'config.kind',
    });
  });
});
