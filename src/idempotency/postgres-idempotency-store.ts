import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/db.ts';
import { preparedStatement } from '../db/prepared-statements.ts';
import { writeWithoutWaiting } from '../db/send-without-waiting.ts';
import { systemClock, type Clock } from '../time/index.ts';
import type {
  BeginOutcome,
  BeginRequest,
  StoredResponse,
  ClaimingIdempotencyStore,
} from './idempotency-store.ts';

export const idempotencyMigrations = [
  {
    id: 'keel_idempotency_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_idempotency_keys (
  scope text NOT NULL,
  key text NOT NULL,
  fingerprint text NOT NULL,
  token uuid NOT NULL,
  locked_until timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  response jsonb,
  PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS keel_idempotency_expires ON keel_idempotency_keys (expires_at);
`,
  },
  {
    id: 'keel_idempotency_0002_claim_in_transaction',
    // The claim a handler's own transaction makes (claimWithin). The advisory lock, not a row,
    // marks a key in flight: it is held until that transaction ends, so a concurrent claim fails
    // at once and a holder that dies lets go with its connection. The row is written only at
    // the end, with its response (completeClaimWithin), and its primary key stops a second
    // commit whatever the isolation level. A refusal is SQLSTATE KI409; what it means (replay,
    // in flight, another request) is read afterwards.
    sql: `
CREATE OR REPLACE FUNCTION keel_idempotency_lock(p_scope text, p_key text) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
  SELECT pg_try_advisory_xact_lock(hashtextextended('keel_idempotency:' || current_schema() || ':' || p_scope || ':' || p_key, 0))
$$;
CREATE OR REPLACE FUNCTION keel_idempotency_claim(p_scope text, p_key text, p_fingerprint text, p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF NOT keel_idempotency_lock(p_scope, p_key) THEN
    RAISE EXCEPTION 'idempotency key % is held by a running request', p_key USING ERRCODE = 'KI409';
  END IF;
  -- Each statement sees what committed before it ran: the lock holder that just ended included.
  DELETE FROM keel_idempotency_keys
   WHERE scope = p_scope AND key = p_key
     AND (expires_at <= p_now OR (response IS NULL AND locked_until <= p_now AND fingerprint = p_fingerprint));
  IF EXISTS (SELECT 1 FROM keel_idempotency_keys WHERE scope = p_scope AND key = p_key) THEN
    RAISE EXCEPTION 'idempotency key % is taken', p_key USING ERRCODE = 'KI409';
  END IF;
END $$;
`,
  },
  {
    id: 'keel_idempotency_0003_claim_new_keys_by_one_probe',
    // Nearly every claim is of a new key. One index probe settles it; the DELETE of an expired
    // or abandoned row and the check after it run only when a row is there: setting up a
    // modifying statement cost more than its probe (docs/idempotency.md has the figures). A row
    // that appears after the probe is stopped, as before, by the primary key at the key's insert.
    sql: `
CREATE OR REPLACE FUNCTION keel_idempotency_claim(p_scope text, p_key text, p_fingerprint text, p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF NOT keel_idempotency_lock(p_scope, p_key) THEN
    RAISE EXCEPTION 'idempotency key % is held by a running request', p_key USING ERRCODE = 'KI409';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM keel_idempotency_keys WHERE scope = p_scope AND key = p_key) THEN
    RETURN;
  END IF;
  -- Each statement sees what committed before it ran: the lock holder that just ended included.
  DELETE FROM keel_idempotency_keys
   WHERE scope = p_scope AND key = p_key
     AND (expires_at <= p_now OR (response IS NULL AND locked_until <= p_now AND fingerprint = p_fingerprint));
  IF EXISTS (SELECT 1 FROM keel_idempotency_keys WHERE scope = p_scope AND key = p_key) THEN
    RAISE EXCEPTION 'idempotency key % is taken', p_key USING ERRCODE = 'KI409';
  END IF;
END $$;
`,
  },
] as const;

/** Takes the key when it is new, expired, or held by a request whose lock ran out without a response. */
const claimKey = preparedStatement(
  `INSERT INTO keel_idempotency_keys AS k (scope, key, fingerprint, token, locked_until, expires_at)
   SELECT $1, $2, $3, $4::uuid, $5::timestamptz, $6::timestamptz
   FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
   ON CONFLICT (scope, key) DO UPDATE
     SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, locked_until = EXCLUDED.locked_until,
         expires_at = EXCLUDED.expires_at, response = NULL
     WHERE k.expires_at <= $7
        OR (k.response IS NULL AND k.locked_until <= $7 AND k.fingerprint = EXCLUDED.fingerprint)
   RETURNING 1`,
);
// The lookups by key stay unprepared: a generic plan made while the table was nearly empty (a
// sequential scan) would stay cached as it grows, until the next ANALYZE.
const readKey = `SELECT fingerprint, token::text AS token, locked_until, expires_at, response
   FROM keel_idempotency_keys WHERE scope = $1 AND key = $2`;
const claimInTransaction = preparedStatement('SELECT keel_idempotency_claim($1, $2, $3, $4::timestamptz)');
const insertCompleted = preparedStatement(
  `INSERT INTO keel_idempotency_keys (scope, key, fingerprint, token, locked_until, expires_at, response)
   VALUES ($1, $2, $3, $4::uuid, $5::timestamptz, $6::timestamptz, $7::jsonb)`,
);
/**
 * A response stored outside the handler's transaction, for a key nobody holds: the lock taken in
 * this statement's own transaction means no claim is running, and an unexpired row wins.
 */
const insertIfUnclaimed = preparedStatement(
  `INSERT INTO keel_idempotency_keys AS k (scope, key, fingerprint, token, locked_until, expires_at, response)
   SELECT $1, $2, $3, $4::uuid, $5::timestamptz, $6::timestamptz, $7::jsonb
   WHERE keel_idempotency_lock($1, $2)
   ON CONFLICT (scope, key) DO UPDATE
     SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, locked_until = EXCLUDED.locked_until,
         expires_at = EXCLUDED.expires_at, response = EXCLUDED.response
     WHERE k.expires_at <= $5`,
);
const storeResponse = `UPDATE keel_idempotency_keys SET response = $4::jsonb WHERE scope = $1 AND key = $2 AND token::text = $3`;

/**
 * A time parameter as ISO 8601 text, for a `$n::timestamptz` placeholder: node-postgres turns a
 * Date into local time with its offset, field by field, at several µs a value on the hot path.
 */
function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

interface KeyRow {
  fingerprint: string;
  token: string;
  locked_until: Date | string;
  expires_at: Date | string;
  response: StoredResponse | null;
}

/**
 * Keys in a PostgreSQL table. `begin` is one statement: it inserts the key, or takes over one
 * that expired or whose holder's lock ran out, atomically; otherwise it reads what is there.
 */
export class PostgresIdempotencyStore implements ClaimingIdempotencyStore {
  readonly #db: Queryable;
  readonly #clock: Clock;

  constructor(db: Queryable, options: { clock?: Clock } = {}) {
    this.#db = db;
    this.#clock = options.clock ?? systemClock;
  }

  async begin(request: BeginRequest): Promise<BeginOutcome> {
    const now = this.#clock.now();
    const token = randomUUID();
    // The claim commits without waiting for its WAL flush (synchronous_commit off for this one
    // statement's transaction): a claim lost in a crash only frees the key, as the crash would
    // have after lockMs anyway, and any later commit that depends on it (the handler's writes
    // with the response, or complete) flushes the WAL up to and including it. This spares one
    // fsync per request: the request's own transaction is then the only durable commit.
    const { rows: taken } = await this.#db.query(claimKey, [
      request.scope,
      request.key,
      request.fingerprint,
      token,
      isoTime(now + request.lockMs),
      isoTime(now + request.ttlMs),
      isoTime(now),
    ]);
    if (taken.length > 0) return { kind: 'started', token };
    const { rows } = await this.#db.query<KeyRow>(readKey, [request.scope, request.key]);
    const row = rows[0];
    // Released between our insert and our read: the caller may simply try again.
    if (row === undefined) return { kind: 'in-flight' };
    if (row.fingerprint !== request.fingerprint) return { kind: 'mismatch' };
    if (row.response !== null) return { kind: 'replay', response: row.response };
    return { kind: 'in-flight' };
  }

  async complete(scope: string, key: string, token: string, response: StoredResponse): Promise<void> {
    await this.completeWithin(this.#db, scope, key, token, response);
  }

  /**
   * Stores the response in the caller's transaction, beside the handler's own writes: both
   * commit or neither does, so a crash after the commit still replays instead of running twice.
   */
  async completeWithin(
    tx: Queryable,
    scope: string,
    key: string,
    token: string,
    response: StoredResponse,
  ): Promise<void> {
    // In a keel transaction the update travels with the COMMIT; nobody needs its answer before.
    await writeWithoutWaiting(tx, storeResponse, [scope, key, token, JSON.stringify(response)]);
  }

  /**
   * Claims the key in the caller's transaction, for a request whose effects are all that
   * transaction's writes: of concurrent claims of one key, one holds it until its transaction
   * ends, and the others' transactions fail with SQLSTATE KI409 (`claimRefusedSqlState`), as
   * does a claim of a key that is completed or held by a `begin`. In a keel `Tx` the claim is
   * sent without waiting: it is settled when the transaction's next awaited statement answers,
   * or at its commit. Finish with `completeClaimWithin` in the same transaction.
   */
  async claimWithin(tx: Queryable, request: BeginRequest): Promise<void> {
    const params = [request.scope, request.key, request.fingerprint, isoTime(this.#clock.now())];
    await writeWithoutWaiting(tx, claimInTransaction, params);
  }

  /** Writes the key of a `claimWithin` claim with its response, committed with the handler's writes. */
  async completeClaimWithin(
    tx: Queryable,
    request: BeginRequest,
    token: string,
    response: StoredResponse,
  ): Promise<void> {
    await writeWithoutWaiting(tx, insertCompleted, this.#completedRow(request, token, response));
  }

  /**
   * What a key holds, without claiming it: the stored response, another request's key, or
   * 'in-flight' — held by a running request, or by none a moment ago (its claim then runs).
   */
  async lookup(request: BeginRequest): Promise<Exclude<BeginOutcome, { kind: 'started' }>> {
    const { rows } = await this.#db.query<KeyRow>(readKey, [request.scope, request.key]);
    const row = rows[0];
    if (row === undefined || new Date(row.expires_at).getTime() <= this.#clock.now())
      return { kind: 'in-flight' };
    if (row.fingerprint !== request.fingerprint) return { kind: 'mismatch' };
    if (row.response !== null) return { kind: 'replay', response: row.response };
    return { kind: 'in-flight' };
  }

  /**
   * Stores a response for a key no transaction holds — an answer given before the handler's
   * claim — so a later claim replays it. A key that is held, or that has an unexpired row, is
   * left alone; returns whether it was stored.
   */
  async storeIfUnclaimed(request: BeginRequest, token: string, response: StoredResponse): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      insertIfUnclaimed,
      this.#completedRow(request, token, response),
    );
    return rowCount > 0;
  }

  /** The parameters of a key's row written with its response: locked until now, kept for ttlMs. */
  #completedRow(request: BeginRequest, token: string, response: StoredResponse): unknown[] {
    const now = this.#clock.now();
    return [
      request.scope,
      request.key,
      request.fingerprint,
      token,
      isoTime(now),
      isoTime(now + request.ttlMs),
      JSON.stringify(response),
    ];
  }

  async release(scope: string, key: string, token: string): Promise<void> {
    await this.#db.query(
      'DELETE FROM keel_idempotency_keys WHERE scope = $1 AND key = $2 AND token::text = $3 AND response IS NULL',
      [scope, key, token],
    );
  }

  /** Deletes expired keys in batches; returns how many. */
  async prune(batchSize = 10_000): Promise<number> {
    let total = 0;
    for (;;) {
      const { rowCount } = await this.#db.query(
        `DELETE FROM keel_idempotency_keys WHERE (scope, key) IN (
           SELECT scope, key FROM keel_idempotency_keys WHERE expires_at <= $1 LIMIT $2)`,
        [isoTime(this.#clock.now()), batchSize],
      );
      total += rowCount;
      if (rowCount < batchSize) return total;
    }
  }
}
