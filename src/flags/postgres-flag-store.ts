import type { Db, Queryable } from '../db/index.ts';
import { VersionConflictError } from '../consistency/index.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
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
  {
    // jsonb sorts an object's keys (by length, then bytes), and a split's buckets follow the
    // order its weights were written in: json keeps the text as written. Rows written before
    // this already lost their order; their next write restores it.
    id: 'keel_flags_0002_definition_json',
    sql: `ALTER TABLE keel_flags ALTER COLUMN definition TYPE json USING definition::json;`,
  },
] as const;

/** A flag as stored: its definition and the version each change increments (1 for the first). */
export interface StoredFlag {
  definition: FlagDefinition;
  version: number;
}

/**
 * A stored flag whose definition does not parse: written around the store's checks (SQL), or
 * by a keel that knows more than this one. `error` names the key and the field.
 */
export interface UnreadableFlag {
  key: string;
  version: number;
  error: KeelError;
}

/** Where a provider reads flags from, and hears that they changed. */
export interface FlagSource {
  list(): Promise<StoredFlag[]>;
  /**
   * Every flag as `list()` gives them, but one whose definition does not parse comes back as an
   * `UnreadableFlag` instead of failing the whole read, so one bad flag does not hide the
   * others' changes. Optional; the provider calls it instead of `list()` when it is there.
   */
  read?(): Promise<(StoredFlag | UnreadableFlag)[]>;
  /** Calls `onChange` when a flag may have changed (a hint: the provider re-reads); returns the unsubscribe. */
  subscribe?(onChange: () => void): Promise<() => Promise<void>>;
}

interface FlagRow {
  key: string;
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

  /** Every flag, by key; fails with the first flag that does not parse (`read()` does not). */
  async list(): Promise<StoredFlag[]> {
    return (await this.read()).map((flag) => {
      if ('error' in flag) throw flag.error;
      return flag;
    });
  }

  async read(): Promise<(StoredFlag | UnreadableFlag)[]> {
    const { rows } = await this.#db.query<FlagRow>(
      'SELECT key, definition, version FROM keel_flags ORDER BY key',
    );
    return rows.map(stored);
  }

  async get(key: string): Promise<StoredFlag | undefined> {
    const { rows } = await this.#db.query<FlagRow>(
      'SELECT key, definition, version FROM keel_flags WHERE key = $1',
      [key],
    );
    if (rows[0] === undefined) return undefined;
    const flag = stored(rows[0]);
    if ('error' in flag) throw flag.error;
    return flag;
  }

  /**
   * Creates or replaces a flag; returns its new version. With `expectedVersion` (0: the flag must
   * not exist yet) the write happens only if the stored version is that one.
   */
  async put(input: FlagDefinition, options: { expectedVersion?: number } = {}): Promise<number> {
    const definition = parseFlagDefinition(input);
    const expected = expectedVersionOf(options);
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
    const expected = expectedVersionOf(options);
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

function expectedVersionOf(options: { expectedVersion?: number }): number | undefined {
  const expected = options.expectedVersion;
  // Else a fraction reaches PostgreSQL as a bigint syntax error, a negative as a false conflict.
  if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0)) {
    throw new InvalidArgumentError(
      'expectedVersion',
      'an integer >= 0 (0: the flag must not exist yet)',
      expected,
    );
  }
  return expected;
}

/** The write `put` makes: any version, none yet (0), or exactly the one read. */
function writeFor(definition: FlagDefinition, expected: number | undefined): [string, unknown[]] {
  const json = JSON.stringify(definition);
  if (expected === undefined) {
    return [
      `INSERT INTO keel_flags AS f (key, definition, version) VALUES ($1, $2::json, 1)
       ON CONFLICT (key) DO UPDATE SET definition = EXCLUDED.definition, version = f.version + 1, updated_at = now()
       RETURNING version`,
      [definition.key, json],
    ];
  }
  if (expected === 0) {
    return [
      `INSERT INTO keel_flags (key, definition, version) VALUES ($1, $2::json, 1)
       ON CONFLICT (key) DO NOTHING RETURNING version`,
      [definition.key, json],
    ];
  }
  return [
    `UPDATE keel_flags SET definition = $2::json, version = version + 1, updated_at = now()
     WHERE key = $1 AND version = $3 RETURNING version`,
    [definition.key, json, expected],
  ];
}

function stored(row: FlagRow): StoredFlag | UnreadableFlag {
  const version = Number(row.version);
  try {
    return { definition: parseFlagDefinition(row.definition), version };
  } catch (error) {
    if (!(error instanceof KeelError)) throw error;
    return {
      key: row.key,
      version,
      error: new KeelError('KEEL_INVALID_ARGUMENT', `flag ${row.key} as stored: ${error.message}`, {
        cause: error,
        details: { key: row.key, version, ...error.details },
      }),
    };
  }
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
