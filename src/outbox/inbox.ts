import type { Db } from '../db/db.ts';
import { preparedStatement } from '../db/prepared-statements.ts';
import { writeWithoutWaiting } from '../db/send-without-waiting.ts';
import { causeOfFailure } from '../db/transaction-scope.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { pruneInBatches, resolvePrune, type PruneOptions } from './outbox-retention.ts';

/** Records (consumer, message id); no row back when it was recorded before. */
const recordReceipt = preparedStatement(
  `INSERT INTO keel_inbox (consumer, message_id, received_at) VALUES ($1, $2, $3)
   ON CONFLICT (consumer, message_id) DO NOTHING RETURNING 1 AS recorded`,
);

/**
 * What `inbox.once` runs in: anything that runs one SQL statement with `$1` parameters and
 * gives the rows back. It is structural, as `OutboxExecutor` is: a keel `Tx`, a node-postgres
 * `PoolClient` or `Client` inside `BEGIN`, a PGlite transaction fit as they are; a Kysely
 * transaction through `{ query: (sql, params) => trx.executeQuery(CompiledQuery.raw(sql, params)) }`.
 */
export interface InboxExecutor {
  query(sql: string, params: unknown[]): PromiseLike<{ rows: readonly unknown[] }>;
}

export type InboxOutcome<T> = { duplicate: false; result: T } | { duplicate: true };

const consumerName = /^[A-Za-z0-9_.:-]{1,200}$/;
/** The inbox keys on `uuid`: any other id would fail inside the caller's transaction. */
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Runs `fn` once per (consumer, message id): records the pair in the caller's transaction, so
 * the record commits if and only if `fn`'s effects do. A redelivered message finds the record
 * and `fn` is skipped; the outcome says it was a duplicate. Turns at-least-once delivery into
 * exactly-once effects.
 *
 * The record and `fn` run behind a savepoint: when `fn` throws (or one of its statements fails),
 * its writes and the record are rolled back, the error passes through, and the transaction
 * stays usable, so a caller that catches it and commits (to record the failure) does not mark
 * the message handled. `fn` gets `tx` itself.
 *
 * Concurrency: two deliveries of one message at once serialise on the primary key; the second
 * waits for the first transaction and then sees a duplicate (or runs, if the first rolled back).
 * Under `repeatable read` or `serializable` the second fails with SQLSTATE 40001 instead, as
 * PostgreSQL does for any conflict with a transaction it cannot see: retry it (the retry sees a
 * duplicate).
 *
 * Keep records longer than a message can be redelivered: the retry horizon (attempts × the
 * longest backoff) plus the outbox relay's claim time. See `pruneInbox`.
 */
export async function inboxOnce<T, X extends InboxExecutor = InboxExecutor>(
  tx: X,
  consumer: string,
  message: Pick<Envelope, 'id'>,
  fn: (tx: X) => Promise<T>,
  options: { clock?: Clock } = {},
): Promise<InboxOutcome<T>> {
  if (typeof consumer !== 'string' || !consumerName.test(consumer)) {
    throw new InvalidArgumentError('consumer', 'a name of [A-Za-z0-9_.:-], 1-200 chars', consumer);
  }
  if (message === null || typeof message !== 'object') {
    throw new InvalidArgumentError('message', 'an Envelope', message);
  }
  if (typeof message.id !== 'string' || !uuid.test(message.id)) {
    throw new InvalidArgumentError('message.id', 'a UUID (Envelope.id)', message.id);
  }
  if (typeof fn !== 'function') throw new InvalidArgumentError('fn', 'a function (tx) => Promise', fn);
  if (tx === null || typeof tx !== 'object' || typeof tx.query !== 'function') {
    throw new InvalidArgumentError('tx', 'a transaction with query(sql, params)', tx);
  }
  // keel's Db runs each statement in a transaction of its own: the record would commit whether
  // or not fn's effects did.
  if (typeof (tx as { transaction?: unknown }).transaction === 'function') {
    throw new InvalidArgumentError(
      'tx',
      'a transaction (db.transaction((tx) => inbox.once(tx, …))), not the Db itself',
      tx,
    );
  }
  const receivedAt = new Date((options.clock ?? systemClock).now());
  // In a keel Tx on pg the savepoint and its release travel with the next statement: no round trip.
  await writeWithoutWaiting(tx, 'SAVEPOINT keel_inbox_once', []);
  let result: T;
  try {
    const { rows } = await tx.query(recordReceipt, [consumer, message.id, receivedAt]);
    if (rows.length === 0) {
      await writeWithoutWaiting(tx, 'RELEASE SAVEPOINT keel_inbox_once', []);
      return { duplicate: true };
    }
    result = await fn(tx);
  } catch (error) {
    // A failure of a statement sent without waiting shows as 25P02 on the next: report its own.
    const cause = await causeOfFailure(tx as never, error);
    // A transaction that failed before the savepoint has none to go back to: it rolls back
    // whole, and its own failure is the one to report.
    await Promise.resolve(tx.query('ROLLBACK TO SAVEPOINT keel_inbox_once', [])).catch(() => undefined);
    throw cause;
  }
  await writeWithoutWaiting(tx, 'RELEASE SAVEPOINT keel_inbox_once', []);
  return { duplicate: false, result };
}

export interface PruneInboxOptions extends PruneOptions {
  /**
   * The longest a message can still be redelivered after its first delivery: the consumer's
   * attempts × its longest backoff, plus the relay's `claimMs` and the broker's redelivery delay.
   * A `retentionMs` shorter than this is refused: a record pruned before the last redelivery
   * turns that redelivery into a second effect. Default 0 (not checked).
   */
  retryHorizonMs?: number;
}

/** Default inbox retention: 7 days, far beyond any retry horizon keel's defaults give. */
export const defaultInboxRetentionMs = 7 * 24 * 3600 * 1000;

/**
 * Deletes inbox records older than `retentionMs` (default 7 days), `batchSize` rows per
 * statement (default 1 000) so a large backlog never holds long locks, by one cleaner at a time
 * (an advisory lock per schema: a second cleaner finds it taken and returns). Returns how many
 * it deleted. Run it on a schedule (a timer, a cron job) in the consumer's service.
 */
export async function pruneInbox(db: Db, options: PruneInboxOptions = {}): Promise<number> {
  const { retentionMs, batchSize, clock } = resolvePrune(options, defaultInboxRetentionMs);
  const horizon = options.retryHorizonMs ?? 0;
  if (typeof horizon !== 'number' || !Number.isFinite(horizon) || horizon < 0) {
    throw new InvalidArgumentError('retryHorizonMs', 'a number of ms >= 0', horizon);
  }
  if (retentionMs <= horizon) {
    throw new InvalidArgumentError('retentionMs', `more than retryHorizonMs (${horizon} ms)`, retentionMs);
  }
  const { deleted } = await pruneInBatches(
    db,
    'keel_inbox',
    `DELETE FROM keel_inbox WHERE (consumer, message_id) IN (
       SELECT consumer, message_id FROM keel_inbox WHERE received_at < $1 LIMIT $2)`,
    { cutoff: new Date(clock.now() - retentionMs), batchSize },
  );
  return deleted;
}

/** `inbox.once(tx, consumer, message, fn)`: the same as `inboxOnce`, as an object to pass around. */
export const inbox = { once: inboxOnce, prune: pruneInbox } as const;
