import type { Queryable, Row } from '../db/index.ts';
import { checkIdentifier, quoteIdentifier } from '../db/identifiers.ts';
import { InvalidArgumentError, NotFoundError } from '../errors/index.ts';
import { VersionConflictError, describeId } from './version-conflict-error.ts';

/** Where a versioned row lives: its table and the names of its id and version columns. */
export interface VersionedTableSpec {
  /**
   * The table: a lower-case identifier, optionally schema-qualified (`billing.accounts`).
   * Unqualified names resolve through the `Db`'s schema.
   */
  table: string;
  /** The primary-key column the id is compared with. Default `id`. */
  idColumn?: string;
  /**
   * An integer column (`integer` or `bigint`, `NOT NULL`) that every write through these helpers
   * increments by one. Default `version`.
   */
  versionColumn?: string;
}

/** A table name alone means `{ table, idColumn: 'id', versionColumn: 'version' }`. */
export type TableRef = string | VersionedTableSpec;

/** A row as read, with its version: what a later `update` must name as expected. */
export interface Versioned<T> {
  version: number;
  row: T;
}

interface ResolvedTable {
  /** As the caller named it, for messages. */
  name: string;
  /** Quoted, for SQL text. */
  sql: string;
  id: string;
  version: string;
  /** The version column unquoted: its key in a returned row. */
  versionName: string;
}

const resolved = new Map<string, ResolvedTable>();

/** Checks every name that goes into SQL text; values never do, they are parameters. */
function resolveTable(ref: TableRef): ResolvedTable {
  const spec: VersionedTableSpec = typeof ref === 'string' ? { table: ref } : ref;
  if (spec === null || typeof spec !== 'object') {
    throw new InvalidArgumentError('table', 'a table name or { table, idColumn?, versionColumn? }', ref);
  }
  const key = `${String(spec.table)}\u0000${String(spec.idColumn)}\u0000${String(spec.versionColumn)}`;
  const cached = resolved.get(key);
  if (cached !== undefined) return cached;
  if (typeof spec.table !== 'string') throw new InvalidArgumentError('table', 'a string', spec.table);
  const parts = spec.table.split('.');
  if (parts.length > 2) throw new InvalidArgumentError('table', 'a name or schema.name', spec.table);
  const sql = parts.map((part) => quoteIdentifier(checkIdentifier('table', part))).join('.');
  const id = quoteIdentifier(checkIdentifier('idColumn', spec.idColumn ?? 'id'));
  const versionName = checkIdentifier('versionColumn', spec.versionColumn ?? 'version');
  const version = quoteIdentifier(versionName);
  if (id === version) {
    throw new InvalidArgumentError('versionColumn', 'a column other than idColumn', versionName);
  }
  const table = { name: spec.table, sql, id, version, versionName };
  // Few distinct tables exist in a program: caching their checked names keeps the regexes off the hot path.
  if (resolved.size < 1000) resolved.set(key, table);
  return table;
}

function checkVersion(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, 'a non-negative safe integer', value);
  }
  return value;
}

/** int8 comes back as a string (node-postgres and keel's PGlite alike); int4 as a number. */
function toVersion(table: ResolvedTable, value: unknown): number {
  const version = typeof value === 'string' ? Number(value) : value;
  if (typeof version !== 'number' || !Number.isSafeInteger(version)) {
    throw new InvalidArgumentError(
      `${table.name}.${table.version}`,
      'an integer version column (integer or bigint, NOT NULL)',
      value,
    );
  }
  return version;
}

/**
 * Compare-and-set on a version column: applies `changes` to the row `id` of `table` only if its
 * version is still `expectedVersion`, increments the version, and returns the new one
 * (`expectedVersion + 1`).
 *
 * - Another version there: rejects with `VersionConflictError` (`KEEL_VERSION_CONFLICT`, 409)
 *   naming the table, the id, the expected and the actual version; nothing was written.
 * - No such row: rejects with `NotFoundError` (`KEEL_NOT_FOUND`).
 *
 * Column names are checked lower-case identifiers (else `KEEL_INVALID_ARGUMENT` naming the field)
 * and quoted; values are always bound parameters. A key whose value is `undefined` is left
 * unchanged; `null` writes NULL. Bind json/jsonb values as `JSON.stringify(value)`: node-postgres
 * sends a bare array as a PostgreSQL array. `changes` may be empty: the write then only claims the
 * next version, which makes a read-check-act sequence conditional on nothing having changed.
 *
 * Pass the transaction the rest of the effect runs in. On PostgreSQL, at READ COMMITTED an update
 * that waited for a concurrent writer's row lock re-checks the version after that commit, so
 * exactly one of two racing writers wins; at REPEATABLE READ or SERIALIZABLE the loser fails with
 * SQLSTATE 40001 instead, which `retryOnConflict` treats as a conflict too.
 */
export async function updateIfVersion<C extends Row>(
  tx: Queryable,
  table: TableRef,
  id: unknown,
  expectedVersion: number,
  changes: Partial<C>,
): Promise<number> {
  const target = resolveTable(table);
  checkVersion('expectedVersion', expectedVersion);
  if (id === undefined || id === null) throw new InvalidArgumentError('id', 'a row id', id);
  if (changes === null || typeof changes !== 'object' || Array.isArray(changes)) {
    throw new InvalidArgumentError('changes', 'an object of column: value', changes);
  }
  const params: unknown[] = [id, expectedVersion];
  const assignments: string[] = [];
  for (const [column, value] of Object.entries(changes)) {
    if (value === undefined) continue;
    const quoted = quoteIdentifier(checkIdentifier(`changes.${column}`, column));
    if (quoted === target.id || quoted === target.version) {
      throw new InvalidArgumentError(
        `changes.${column}`,
        'a column other than the id and the version, which the write manages',
      );
    }
    params.push(value);
    assignments.push(`${quoted} = $${params.length}`);
  }
  assignments.push(`${target.version} = ${target.version} + 1`);
  const { rows } = await tx.query<{ version: unknown }>(
    `UPDATE ${target.sql} SET ${assignments.join(', ')}
     WHERE ${target.id} = $1 AND ${target.version} = $2
     RETURNING ${target.version} AS version`,
    params,
  );
  if (rows[0] !== undefined) return toVersion(target, rows[0].version);
  // Zero rows: either the version moved or the row is gone. At READ COMMITTED this sees the
  // version the winner committed, so the error names it.
  const current = await tx.query<{ version: unknown }>(
    `SELECT ${target.version} AS version FROM ${target.sql} WHERE ${target.id} = $1`,
    [id],
  );
  if (current.rows[0] === undefined) throw new NotFoundError(target.name, describeId(id));
  throw new VersionConflictError({
    table: target.name,
    id,
    expected: expectedVersion,
    actual: toVersion(target, current.rows[0].version),
  });
}

/**
 * Reads the row `id` of `table` (every column) and its version, or `undefined` when there is none:
 * the state a read-modify-write starts from. Pass the version to `updateIfVersion`.
 */
export async function readVersioned<T extends Row = Row>(
  db: Queryable,
  table: TableRef,
  id: unknown,
): Promise<Versioned<T> | undefined> {
  const target = resolveTable(table);
  if (id === undefined || id === null) throw new InvalidArgumentError('id', 'a row id', id);
  const { rows } = await db.query<T>(`SELECT * FROM ${target.sql} WHERE ${target.id} = $1`, [id]);
  const row = rows[0];
  if (row === undefined) return undefined;
  return { version: toVersion(target, row[target.versionName]), row };
}

/** A table's conditional writes with its columns typed: `Partial<Columns>` is what `update` accepts. */
export interface VersionedTable<Columns extends Row, Id = string> {
  readonly spec: Readonly<VersionedTableSpec>;
  /** `updateIfVersion` on this table: the new version, or `VersionConflictError` / `NotFoundError`. */
  update(tx: Queryable, id: Id, expectedVersion: number, changes: Partial<Columns>): Promise<number>;
  /** `readVersioned` on this table. */
  read(db: Queryable, id: Id): Promise<Versioned<Columns> | undefined>;
}

/**
 * Binds a table once, its names checked at once (not at the first write):
 *
 * ```ts
 * const accounts = versionedTable<{ balance: number }>('accounts');
 * const current = await accounts.read(db, id);
 * await db.transaction((tx) => accounts.update(tx, id, current.version, { balance: current.row.balance + 10 }));
 * ```
 */
export function versionedTable<Columns extends Row, Id = string>(
  table: TableRef,
): VersionedTable<Columns, Id> {
  resolveTable(table);
  const spec = Object.freeze(typeof table === 'string' ? { table } : { ...table });
  return {
    spec,
    update: (tx, id, expectedVersion, changes) =>
      updateIfVersion<Columns>(tx, spec, id, expectedVersion, changes),
    read: (db, id) => readVersioned<Columns>(db, spec, id),
  };
}
