import { canNotifyAfterCommit } from '../db/notify-after-commit.ts';
import { preparedStatement } from '../db/prepared-statements.ts';
import { writeWithoutWaiting } from '../db/send-without-waiting.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { envelopeRecordset } from '../messaging/envelope-recordset.ts';
import { outboxArguments } from './outbox-arguments.ts';
import { outboxChannel } from './schema.ts';

/**
 * What `outbox.add` writes through: anything that runs one SQL statement with `$1` parameters.
 * It is structural, so no driver or ORM is a dependency, and these fit as they are: a keel
 * `Tx`, a node-postgres `PoolClient` or `Client` inside `BEGIN`, a PGlite transaction. A query
 * builder's transaction fits through one line, for Kysely:
 *
 * ```ts
 * { query: (sql, params) => trx.executeQuery(CompiledQuery.raw(sql, params)) }
 * ```
 *
 * The result is ignored; the statement must run in the caller's open transaction.
 */
export interface OutboxExecutor {
  query(sql: string, params: unknown[]): PromiseLike<unknown>;
}

/**
 * Writes messages into the caller's transaction for a relay to publish: `addToOutbox` (the
 * table) and `addToWalOutbox` (a logical message) both are one, so code that writes events can
 * take either.
 */
export type OutboxWriter = (
  tx: OutboxExecutor,
  destination: string,
  messages: Envelope | readonly Envelope[],
) => Promise<void>;

export interface AddToOutboxOptions {
  /**
   * Take a transaction-scoped advisory lock per (destination, key) before inserting, held until
   * the caller's transaction ends. Two transactions writing messages of one key then commit in
   * the order their rows are numbered, which is what lets the relay promise per-key commit order
   * (see docs/outbox.md). Cost: writers of one key wait for each other from `add` to commit.
   * Messages without a key take no lock. Default true.
   */
  lockKeys?: boolean;
}

/**
 * Writes messages into the outbox table in the caller's transaction, so they are published if
 * and only if the transaction commits. `tx` is anything with `query(sql, params)`: see
 * `OutboxExecutor`.
 *
 * A relay publishes each committed row at least once, and messages of one key in the order
 * they committed; consumers deduplicate on `Envelope.id` (the inbox).
 *
 * In a keel `Tx` the insert is sent without waiting for its answer (on pg it travels with the
 * next statement or the COMMIT, saving a round trip): `add` resolves at once, and a failed
 * insert (a message id already in the outbox) rejects the transaction instead of `add`. Other
 * transactions await the insert, and `add` rejects with its error.
 *
 * Concurrency: with `lockKeys` (the default) a transaction that adds messages of several keys
 * locks them in sorted order within one call; two transactions that add keys in opposite
 * orders across several calls can deadlock, and PostgreSQL then aborts one (SQLSTATE 40P01):
 * add all of a transaction's messages in one call, or retry on 40P01.
 */
export async function addToOutbox(
  tx: OutboxExecutor,
  destination: string,
  messages: Envelope | readonly Envelope[],
  options: AddToOutboxOptions = {},
): Promise<void> {
  const list = outboxArguments(tx, destination, messages);
  if (list.length === 0) return;
  const lockKeys = options.lockKeys ?? true;
  // The common case — one message, in a keel transaction that notifies after its commit — is a
  // plain INSERT, which the server plans and runs at a fraction of the general statement's cost.
  if (list.length === 1 && canNotifyAfterCommit(tx)) {
    await writeWithoutWaiting(tx, ...insertOne(destination, list[0]!, lockKeys));
    tx.notifyAfterCommit(outboxChannel);
    return;
  }
  // keel's own transactions wake the relay after their commit; a foreign one, inside it.
  const notifyLater = canNotifyAfterCommit(tx);
  // The locks CTE calls a volatile function, so PostgreSQL materialises it, and the insert's
  // rows (and their seq numbers) exist only after its aggregate has taken every lock. The
  // NOTIFY is delivered only at commit, together with the rows (see NotifiesAfterCommit for
  // why keel's own transactions send it after the commit instead).
  const sql = `WITH locks AS (
       SELECT count(pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || $1 || ':' || k, 0))) AS n
       FROM (SELECT DISTINCT m.key AS k FROM jsonb_to_recordset($2::jsonb) AS m(key text)
             WHERE $4::boolean AND m.key IS NOT NULL ORDER BY 1) AS keys),
     inserted AS (
       INSERT INTO keel_outbox (destination, id, type, key, payload, headers, occurred_at, hlc)
       SELECT $1, m.id, m.type, m.key, m.payload, m.headers, m.occurred_at, m.hlc
       FROM locks, jsonb_to_recordset($2::jsonb)
         AS m(id uuid, type text, key text, payload jsonb, headers jsonb, occurred_at timestamptz, hlc text)
       WHERE locks.n >= 0
       RETURNING 1)
     SELECT CASE WHEN $5::boolean THEN NULL ELSE pg_notify($3, '') END FROM (SELECT count(*) FROM inserted) AS c`;
  const params = [destination, envelopeRecordset(list), outboxChannel, lockKeys, notifyLater];
  // keel's own transactions send the insert on with the next statement or the COMMIT: nobody
  // needs its answer now, and the transaction rejects if it failed.
  await writeWithoutWaiting(tx, sql, params);
  if (notifyLater) tx.notifyAfterCommit(outboxChannel);
}

const insertColumns = 'destination, id, type, key, payload, headers, occurred_at, hlc';
const insertValues = '$1, $2::uuid, $3, $4, $5::jsonb, $6::jsonb, $7::timestamptz, $8';
const insertWithoutLock = preparedStatement(
  `INSERT INTO keel_outbox (${insertColumns}) VALUES (${insertValues})`,
);
/**
 * With a key to lock, the lock is taken in a FROM subquery, which PostgreSQL evaluates (a
 * volatile call is never flattened away) before it numbers the row.
 */
const insertWithKeyLock = preparedStatement(
  `INSERT INTO keel_outbox (${insertColumns})
   SELECT ${insertValues}
   FROM (SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || $1 || ':' || $4, 0))) AS key_lock`,
);

/** One message's INSERT: both texts are prepared statements on pg. */
function insertOne(destination: string, message: Envelope, lockKeys: boolean): [string, unknown[]] {
  const params = [
    destination,
    message.id,
    message.type,
    message.key ?? null,
    JSON.stringify(message.payload),
    JSON.stringify(message.headers),
    message.occurredAt,
    message.hlc ?? null,
  ];
  return [!lockKeys || message.key === null ? insertWithoutLock : insertWithKeyLock, params];
}

/** `outbox.add(tx, destination, messages)`: the same as `addToOutbox`, as an object to pass around. */
export const outbox = { add: addToOutbox } as const;
