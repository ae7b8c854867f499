import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { createTestDb, type TestDb } from '../testing/db.ts';
import type { Db } from './db.ts';
import { defaultDatabaseUrl } from './open-db.ts';
import { openPgDb } from './pg-db.ts';
import { PgliteDb, openPgliteDb } from './pglite-db.ts';
import { loadMigrations, migrationChecksum } from './migration-files.ts';
import { migrate } from './migrations.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function testDb(): Promise<TestDb> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  return db;
}

async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'keel-migrations-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) await writeFile(path.join(dir, name), sql);
  return dir;
}

const first = { id: '0001_orders', sql: 'CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);' };
const second = {
  id: '0002_order_lines',
  sql: `CREATE TABLE order_lines (order_id int REFERENCES orders (id), sku text);
        CREATE INDEX order_lines_order ON order_lines (order_id);`,
};

describe('migrate', () => {
  it('applies migrations once, in order, in the Db schema, and records their checksums', async () => {
    const db = await testDb();
    const report = await migrate(db, [first, second]);
    expect(report).toEqual({ applied: ['0001_orders', '0002_order_lines'], alreadyApplied: [], unknown: [] });
    await db.query("INSERT INTO orders VALUES (1, 'PENDING')");
    const { rows } = await db.query<{ id: string; checksum: string }>(
      'SELECT id, checksum FROM keel_migrations ORDER BY id',
    );
    expect(rows).toEqual([
      { id: '0001_orders', checksum: migrationChecksum(first.sql) },
      { id: '0002_order_lines', checksum: migrationChecksum(second.sql) },
    ]);
    const tables = await db.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
      [db.schema],
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(['keel_migrations', 'order_lines', 'orders']);
  });

  it('is idempotent on re-run, and applies only what is new', async () => {
    const db = await testDb();
    await migrate(db, [first]);
    expect(await migrate(db, [first])).toEqual({ applied: [], alreadyApplied: ['0001_orders'], unknown: [] });
    expect(await migrate(db, [first, second])).toEqual({
      applied: ['0002_order_lines'],
      alreadyApplied: ['0001_orders'],
      unknown: [],
    });
    // An older release that does not know 0002 runs without touching it.
    expect(await migrate(db, [first])).toEqual({
      applied: [],
      alreadyApplied: ['0001_orders'],
      unknown: ['0002_order_lines'],
    });
  });

  it('refuses an applied migration whose SQL changed, naming it, before applying anything', async () => {
    const db = await testDb();
    const dir = await migrationsDir({ '0001_orders.sql': first.sql });
    await migrate(db, { dir });
    await writeFile(path.join(dir, '0001_orders.sql'), first.sql.replace('status', 'state'));
    await writeFile(path.join(dir, '0002_order_lines.sql'), second.sql);
    const error: unknown = await migrate(db, { dir }).catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_MIGRATION_CHANGED')).toBe(true);
    expect((error as Error).message).toContain(path.join(dir, '0001_orders.sql'));
    const { rows } = await db.query('SELECT id FROM keel_migrations');
    expect(rows).toEqual([{ id: '0001_orders' }]);
  });

  it('treats CRLF line endings as the same migration', async () => {
    const db = await testDb();
    await migrate(db, [{ id: '0001_a', sql: 'CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n' }]);
    const again = await migrate(db, [
      { id: '0001_a', sql: 'CREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r\n' },
    ]);
    expect(again.alreadyApplied).toEqual(['0001_a']);
  });

  it('rolls back a failing migration entirely and names it, keeping the ones before', async () => {
    const db = await testDb();
    const dir = await migrationsDir({
      '0001_orders.sql': first.sql,
      '0002_broken.sql':
        'CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nSELECT no_such_function();',
      '0003_after.sql': 'CREATE TABLE after_broken (id int);',
    });
    const error: unknown = await migrate(db, { dir }).catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_MIGRATION_FAILED')).toBe(true);
    expect((error as Error).message).toContain('0002_broken');
    expect((error as Error).message).toContain(path.join(dir, '0002_broken.sql'));
    expect((error as Error).cause).toMatchObject({ code: '42883' });
    const tables = await db.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
      [db.schema],
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(['keel_migrations', 'orders']);
    expect((await db.query('SELECT id FROM keel_migrations')).rows).toEqual([{ id: '0001_orders' }]);

    // Fixed, the run continues where it stopped.
    await writeFile(path.join(dir, '0002_broken.sql'), 'CREATE TABLE half (id int);');
    expect((await migrate(db, { dir })).applied).toEqual(['0002_broken', '0003_after']);
  });

  it('reads NNNN_name.sql files ordered by number, ignoring other files', async () => {
    const dir = await migrationsDir({
      '10_ten.sql': 'SELECT 10;',
      '0002_two.sql': 'SELECT 2;',
      '1_one.sql': 'SELECT 1;',
      'README.md': '# not a migration',
    });
    const migrations = await loadMigrations(dir);
    expect(migrations.map((m) => m.id)).toEqual(['1_one', '0002_two', '10_ten']);
    expect(migrations[0]?.source).toBe(path.join(dir, '1_one.sql'));
  });

  it('rejects a misnamed .sql file, a duplicated number, duplicate ids and empty SQL', async () => {
    const misnamed = await migrationsDir({ '0001_ok.sql': 'SELECT 1;', 'create orders.sql': 'SELECT 1;' });
    await expect(loadMigrations(misnamed)).rejects.toThrow(/create orders\.sql/);
    const duplicated = await migrationsDir({ '0001_a.sql': 'SELECT 1;', '1_b.sql': 'SELECT 1;' });
    await expect(loadMigrations(duplicated)).rejects.toThrow(/share the number 1/);
    await expect(loadMigrations(path.join(misnamed, 'missing'))).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
    });
    const db = await testDb();
    await expect(migrate(db, [first, first])).rejects.toMatchObject({ field: 'migrations.1.id' });
    await expect(migrate(db, [{ id: '0001_x', sql: ' ' }])).rejects.toMatchObject({
      field: 'migrations.0.sql',
    });
    await expect(migrate(db, { dir: 42 } as unknown as { dir: string })).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
    });
  });

  it('keeps the migrations of each schema apart', async () => {
    const a = await testDb();
    const b = await testDb();
    await migrate(a, [first]);
    expect((await migrate(b, [first])).applied).toEqual(['0001_orders']);
  });

  it('applies each migration exactly once when several runners start at once', async () => {
    const db = await testDb();
    // Separate Db instances on the same schema: separate pools (separate processes' view) on pg,
    // separate PgliteDbs over the one instance on PGlite.
    const runners: Db[] = [];
    for (let i = 0; i < 4; i++) {
      const runner =
        db.inner instanceof PgliteDb
          ? await openPgliteDb({ pglite: db.inner.pglite, schema: db.schema })
          : await openPgDb({
              url: process.env.DATABASE_URL?.trim() || defaultDatabaseUrl,
              schema: db.schema,
              poolSize: 2,
            });
      cleanups.push(() => runner.close());
      runners.push(runner);
    }
    // Not idempotent on purpose: a second run of any of them fails (CREATE TABLE) or double counts.
    const migrations = Array.from({ length: 6 }, (_, i) => ({
      id: `000${i + 1}_step`,
      sql:
        i === 0
          ? 'CREATE TABLE runs (id text); CREATE TABLE t1 (id int);'
          : `CREATE TABLE t${i + 1} (id int); INSERT INTO runs VALUES ('${i + 1}'); SELECT pg_sleep(0.01);`,
    }));
    const reports = await Promise.all(runners.map((runner) => migrate(runner, migrations)));
    const appliedCounts = migrations.map(
      (m) => reports.filter((report) => report.applied.includes(m.id)).length,
    );
    expect(appliedCounts).toEqual([1, 1, 1, 1, 1, 1]);
    for (const report of reports) {
      expect([...report.applied, ...report.alreadyApplied].sort()).toEqual(migrations.map((m) => m.id));
    }
    const { rows } = await db.query<{ id: string; n: string }>(
      'SELECT id, count(*) AS n FROM runs GROUP BY id ORDER BY id',
    );
    expect(rows).toEqual(['2', '3', '4', '5', '6'].map((id) => ({ id, n: '1' })));
  });
});
