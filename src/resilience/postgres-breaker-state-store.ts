import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { BreakerStateStore, CompareAndSetResult, StoredBreakerState } from './breaker-state-store.ts';
import type { CircuitState } from './circuit-state.ts';

/** The table, for a migration; `ensureTable()` runs the same statement. */
export const breakerStateTableSql = `CREATE TABLE IF NOT EXISTS keel_breaker_state (
  key text PRIMARY KEY,
  version bigint NOT NULL,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
)`;

interface Row {
  version: number | string;
  state: CircuitState | string;
}

/**
 * Breaker state shared through PostgreSQL (pg or PGlite): one row per breaker. The
 * compare-and-set is one conditional statement, atomic under any isolation level.
 */
export class PostgresBreakerStateStore implements BreakerStateStore {
  readonly #db: Queryable;

  constructor(options: { db: Queryable }) {
    if (typeof options?.db?.query !== 'function')
      throw new InvalidArgumentError('db', 'a Db or Queryable', options?.db);
    this.#db = options.db;
  }

  async ensureTable(): Promise<void> {
    await this.#db.query(breakerStateTableSql);
  }

  async load(key: string): Promise<StoredBreakerState | undefined> {
    const { rows } = await this.#db.query<Row>(
      'SELECT version, state FROM keel_breaker_state WHERE key = $1',
      [key],
    );
    return rows[0] === undefined ? undefined : record(rows[0]);
  }

  async compareAndSet(
    key: string,
    expectedVersion: number,
    state: CircuitState,
  ): Promise<CompareAndSetResult> {
    const json = JSON.stringify(state);
    // Insert only for "nothing stored yet"; otherwise update only the expected version.
    const { rows } =
      expectedVersion === 0
        ? await this.#db.query<Row>(
            `INSERT INTO keel_breaker_state (key, version, state) VALUES ($1, 1, $2::jsonb)
             ON CONFLICT (key) DO NOTHING RETURNING version, state`,
            [key, json],
          )
        : await this.#db.query<Row>(
            `UPDATE keel_breaker_state SET version = version + 1, state = $3::jsonb, updated_at = now()
             WHERE key = $1 AND version = $2 RETURNING version, state`,
            [key, expectedVersion, json],
          );
    if (rows[0] !== undefined) return { saved: true, record: record(rows[0]) };
    const current = await this.load(key);
    return { saved: false, record: current ?? { version: 0, state: { status: 'closed', since: 0 } } };
  }

  async delete(key: string): Promise<void> {
    await this.#db.query('DELETE FROM keel_breaker_state WHERE key = $1', [key]);
  }
}

function record(row: Row): StoredBreakerState {
  // pg returns bigint as a string, and jsonb parsed; be explicit about both.
  return {
    version: Number(row.version),
    state: typeof row.state === 'string' ? (JSON.parse(row.state) as CircuitState) : row.state,
  };
}
