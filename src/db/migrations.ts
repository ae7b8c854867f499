import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import type { Db, Tx } from './db.ts';
import { checkIdentifier, quoteIdentifier } from './identifiers.ts';
import { loadMigrations, migrationChecksum, type Migration } from './migration-files.ts';

export interface MigrateOptions {
  /** The table that records applied migrations, in the Db's schema. Default `keel_migrations`. */
  table?: string;
}

export interface MigrationReport {
  /** Applied by this run, in order. */
  applied: string[];
  /** Applied before (by an earlier run or a concurrent one), checksum unchanged. */
  alreadyApplied: string[];
  /** Recorded in the table but absent from the given migrations (a newer release ran here). Left alone. */
  unknown: string[];
}

/** Migrations given in code, or the `NNNN_name.sql` files of a directory. */
export type MigrationSource = readonly Migration[] | { dir: string };

/**
 * Brings the Db's schema up to date: applies each migration not yet recorded, in order, each in its
 * own transaction together with its record, so a migration is applied entirely or not at all.
 *
 * - Idempotent: a second run applies nothing.
 * - Safe to run from several processes at once: each transaction first takes an advisory lock
 *   keyed on the schema and the table, then re-reads the record, so every migration runs exactly once.
 * - An applied migration whose SQL changed fails the run with `KEEL_MIGRATION_CHANGED`, before
 *   anything is applied.
 * - A migration whose SQL fails ends the run with `KEEL_MIGRATION_FAILED`; it and the ones after it
 *   are not applied, the ones before it stay applied.
 */
export async function migrate(
  db: Db,
  source: MigrationSource,
  options: MigrateOptions = {},
): Promise<MigrationReport> {
  const migrations = Array.isArray(source)
    ? checkMigrations(source as readonly Migration[])
    : await loadFromDir(source);
  const tableName = checkIdentifier('table', options.table ?? 'keel_migrations');
  const table = `${quoteIdentifier(db.schema)}.${quoteIdentifier(tableName)}`;
  const lockKey = `keel:migrate:${db.schema}.${tableName}`;
  const lock = async (tx: Tx): Promise<void> => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockKey]);
  };

  const recorded = await db.transaction(async (tx) => {
    await lock(tx);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS ${table} (
         id text PRIMARY KEY,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await tx.query<{ id: string; checksum: string }>(`SELECT id, checksum FROM ${table}`);
    return new Map(rows.map((row) => [row.id, row.checksum]));
  });

  const checksums = migrations.map((migration) => migrationChecksum(migration.sql));
  migrations.forEach((migration, i) => {
    const applied = recorded.get(migration.id);
    if (applied !== undefined && applied !== checksums[i]) throw changed(migration);
  });

  const report: MigrationReport = {
    applied: [],
    alreadyApplied: [],
    unknown: [...recorded.keys()].filter((id) => !migrations.some((m) => m.id === id)),
  };
  for (const [i, migration] of migrations.entries()) {
    const checksum = checksums[i] ?? '';
    if (recorded.has(migration.id)) {
      report.alreadyApplied.push(migration.id);
      continue;
    }
    const outcome = await db.transaction(async (tx) => {
      await lock(tx);
      // Another process may have applied it while this one waited for the lock.
      const { rows } = await tx.query<{ checksum: string }>(`SELECT checksum FROM ${table} WHERE id = $1`, [
        migration.id,
      ]);
      const existing = rows[0];
      if (existing !== undefined) {
        if (existing.checksum !== checksum) throw changed(migration);
        return 'already' as const;
      }
      try {
        await tx.query(migration.sql);
      } catch (cause) {
        const reason = cause instanceof Error ? cause.message : String(cause);
        throw new KeelError(
          'KEEL_MIGRATION_FAILED',
          `migration ${describe(migration)} failed: ${reason}. Nothing of it was applied; fix it and run again`,
          { cause, details: { id: migration.id, source: migration.source } },
        );
      }
      await tx.query(`INSERT INTO ${table} (id, checksum) VALUES ($1, $2)`, [migration.id, checksum]);
      return 'applied' as const;
    });
    (outcome === 'applied' ? report.applied : report.alreadyApplied).push(migration.id);
  }
  return report;
}

function describe(migration: Migration): string {
  return migration.source === undefined ? migration.id : `${migration.id} (${migration.source})`;
}

function changed(migration: Migration): KeelError {
  return new KeelError(
    'KEEL_MIGRATION_CHANGED',
    `migration ${describe(migration)} was already applied, and its SQL has changed since. Never edit an applied migration: restore it and add a new one`,
    { details: { id: migration.id, source: migration.source } },
  );
}

async function loadFromDir(source: unknown): Promise<Migration[]> {
  if (
    source === null ||
    typeof source !== 'object' ||
    typeof (source as { dir?: unknown }).dir !== 'string'
  ) {
    throw new InvalidArgumentError('migrations', 'an array of { id, sql } or { dir }', source);
  }
  return loadMigrations((source as { dir: string }).dir);
}

function checkMigrations(migrations: readonly Migration[]): Migration[] {
  const seen = new Set<string>();
  migrations.forEach((migration, i) => {
    if (migration === null || typeof migration !== 'object') {
      throw new InvalidArgumentError(`migrations.${i}`, 'an object { id, sql }', migration);
    }
    if (typeof migration.id !== 'string' || migration.id.trim() === '') {
      throw new InvalidArgumentError(`migrations.${i}.id`, 'a non-empty string', migration.id);
    }
    if (typeof migration.sql !== 'string' || migration.sql.trim() === '') {
      throw new InvalidArgumentError(`migrations.${i}.sql`, 'a non-empty string of SQL', migration.sql);
    }
    if (seen.has(migration.id)) {
      throw new InvalidArgumentError(
        `migrations.${i}.id`,
        'an id not used by an earlier migration',
        migration.id,
      );
    }
    seen.add(migration.id);
  });
  return [...migrations];
}
