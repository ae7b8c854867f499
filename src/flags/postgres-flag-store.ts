import type { Db, Queryable } from '../db/index.ts';
import { VersionConflictError } from '../consistency/index.ts';
import { parseFlagDefinition, type FlagDefinition } from './flag-definition.ts';

/** The NOTIFY channel a flag's change is announced on, after its commit. */
export const flagsChannel = 'keel_flags';

export const flagMigrations = [
  {
    id: 'keel_flags_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_flags (
  key text PRIMARY KEY,
  definition jsonb NOT NULL,
  version bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
`,
  },
] as const;

/** A flag as stored: its definition and the version each change increments (1 for the first). */
export interface StoredFlag {
  definition: FlagDefinition;
  version: number;
}

/** Where a provider reads flags from, and hears that they changed. */
export interface FlagSource {
  list(): Promise<StoredFlag[]>;
  /** Calls `onChange` when a flag may have changed (a hint: the provider re-reads); returns the unsubscribe. */
  subscribe?(onChange: () => void): Promise<() => Promise<void>>;
}

interface FlagRow {
  definition: unknown;
  version: string | number;
}

/**
 * Flags in a PostgreSQL table (`flagMigrations`), changed by conditional writes: `put` with the
 * version read replaces only that version, else fails with `KEEL_VERSION_CONFLICT`, so two
 * operators editing one flag never lose an edit. Every change NOTIFYs `keel_flags` at commit,
 * so providers on other processes re-read within a round trip.
 */
export class PostgresFlagStore implements FlagSource {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async list(): Promise<StoredFlag[]> {
    const { rows } = await this.#db.query<FlagRow>('SELECT definition, version FROM keel_flags ORDER BY key');
    return rows.map(stored);
  }

  async get(key: string): Promise<StoredFlag | undefined> {
    const { rows } = await this.#db.query<FlagRow>(
      'SELECT definition, version FROM keel_flags WHERE key = $1',
      [key],
    );
    return rows[0] === undefined ? undefined : stored(rows[0]);
  }

  /**
   * Creates or replaces a flag; returns its new version. With `expectedVersion` (0: the flag must
   * not exist yet) the write happens only if the stored version is that one.
   */
  async put(input: FlagDefinition, options: { expectedVersion?: number } = {}): Promise<number> {
    const definition = parseFlagDefinition(input);
    const expected = options.expectedVersion;
    return this.#db.transaction(async (tx) => {
      const [sql, params] = writeFor(definition, expected);
      const { rows } = await tx.query<{ version: string }>(sql, params);
      if (rows[0] === undefined) throw await conflict(tx, definition.key, expected ?? 0);
      await tx.query('SELECT pg_notify($1, $2)', [flagsChannel, definition.key]);
      return Number(rows[0].version);
    });
  }

  /** Deletes a flag (with `expectedVersion`, only that version); returns whether one was deleted. */
  async remove(key: string, options: { expectedVersion?: number } = {}): Promise<boolean> {
    const expected = options.expectedVersion;
    return this.#db.transaction(async (tx) => {
      const { rowCount } = await tx.query(
        'DELETE FROM keel_flags WHERE key = $1 AND ($2::bigint IS NULL OR version = $2::bigint)',
        [key, expected === undefined ? null : expected],
      );
      if (rowCount === 0 && expected !== undefined) throw await conflict(tx, key, expected);
      if (rowCount > 0) await tx.query('SELECT pg_notify($1, $2)', [flagsChannel, key]);
      return rowCount > 0;
    });
  }

  async subscribe(onChange: () => void): Promise<() => Promise<void>> {
    return this.#db.listen(flagsChannel, () => onChange());
  }
}

/** The write `put` makes: any version, none yet (0), or exactly the one read. */
function writeFor(definition: FlagDefinition, expected: number | undefined): [string, unknown[]] {
  const json = JSON.stringify(definition);
  if (expected === undefined) {
    return [
      `INSERT INTO keel_flags AS f (key, definition, version) VALUES ($1, $2::jsonb, 1)
       ON CONFLICT (key) DO UPDATE SET definition = EXCLUDED.definition, version = f.version + 1, updated_at = now()
       RETURNING version`,
      [definition.key, json],
    ];
  }
  if (expected === 0) {
    return [
      `INSERT INTO keel_flags (key, definition, version) VALUES ($1, $2::jsonb, 1)
       ON CONFLICT (key) DO NOTHING RETURNING version`,
      [definition.key, json],
    ];
  }
  return [
    `UPDATE keel_flags SET definition = $2::jsonb, version = version + 1, updated_at = now()
     WHERE key = $1 AND version = $3 RETURNING version`,
    [definition.key, json, expected],
  ];
}

function stored(row: FlagRow): StoredFlag {
  return { definition: parseFlagDefinition(row.definition), version: Number(row.version) };
}

async function conflict(tx: Queryable, key: string, expected: number): Promise<VersionConflictError> {
  const { rows } = await tx.query<{ version: string }>('SELECT version FROM keel_flags WHERE key = $1', [
    key,
  ]);
  return new VersionConflictError({
    table: 'keel_flags',
    id: key,
    expected,
    actual: Number(rows[0]?.version ?? 0),
  });
}
