import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { RateLimitStore, TakeRequest } from './rate-limit-store.ts';
import type { TakeResult } from './token-bucket.ts';

/** The table, for a migration; `ensureTable()` runs the same statement. */
export const rateLimitTableSql = `CREATE TABLE IF NOT EXISTS keel_rate_limit_bucket (
  key text PRIMARY KEY,
  milli_tokens double precision NOT NULL,
  at double precision NOT NULL,
  granted boolean NOT NULL
)`;

// refillAndTake (token-bucket.ts) as one upsert: ON CONFLICT locks the row, so concurrent
// takes on one key run one after another, and the statement is atomic. `granted` records
// this take's verdict so RETURNING can report it. $1 key, $2 capacity, $3 rate, $4 cost, $5 now.
const takeSql = `
INSERT INTO keel_rate_limit_bucket AS b (key, milli_tokens, at, granted)
VALUES ($1,
  CASE WHEN $2::float8 * 1000 >= $4::float8 * 1000 THEN ($2::float8 - $4::float8) * 1000 ELSE $2::float8 * 1000 END,
  $5::float8, $2::float8 >= $4::float8)
ON CONFLICT (key) DO UPDATE SET
  milli_tokens = CASE
    WHEN LEAST($2::float8 * 1000, b.milli_tokens + GREATEST(0, $5::float8 - b.at) * $3::float8) >= $4::float8 * 1000
    THEN LEAST($2::float8 * 1000, b.milli_tokens + GREATEST(0, $5::float8 - b.at) * $3::float8) - $4::float8 * 1000
    ELSE LEAST($2::float8 * 1000, b.milli_tokens + GREATEST(0, $5::float8 - b.at) * $3::float8) END,
  at = GREATEST(b.at, $5::float8),
  granted = LEAST($2::float8 * 1000, b.milli_tokens + GREATEST(0, $5::float8 - b.at) * $3::float8) >= $4::float8 * 1000
RETURNING milli_tokens, granted`;

/** Token buckets shared through PostgreSQL (pg or PGlite): one row per key, one statement per take. */
export class PostgresRateLimitStore implements RateLimitStore {
  readonly #db: Queryable;

  constructor(options: { db: Queryable }) {
    if (typeof options?.db?.query !== 'function')
      throw new InvalidArgumentError('db', 'a Db or Queryable', options?.db);
    this.#db = options.db;
  }

  async ensureTable(): Promise<void> {
    await this.#db.query(rateLimitTableSql);
  }

  async take(key: string, request: TakeRequest): Promise<TakeResult> {
    const { capacity, refillPerSecond, cost, now } = request;
    const { rows } = await this.#db.query<{ milli_tokens: number | string; granted: boolean }>(takeSql, [
      key,
      capacity,
      refillPerSecond,
      cost,
      now,
    ]);
    const milli = Number(rows[0]!.milli_tokens);
    const granted = rows[0]!.granted;
    const need = cost * 1000;
    const retryAfterMs = granted
      ? 0
      : refillPerSecond > 0
        ? Math.ceil((need - milli) / refillPerSecond)
        : Infinity;
    return { granted, remaining: Math.floor(milli / 1000), retryAfterMs };
  }

  async delete(key: string): Promise<void> {
    await this.#db.query('DELETE FROM keel_rate_limit_bucket WHERE key = $1', [key]);
  }
}
