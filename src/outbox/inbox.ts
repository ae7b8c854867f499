import type { Db, Queryable } from '../db/db.ts';
import { preparedStatement } from '../db/prepared-statements.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { pruneInBatches, resolvePrune, type PruneOptions } from './outbox-retention.ts';

/** Records (consumer, message id); no row back when it was recorded before. */
const recordReceipt = preparedStatement(
  `INSERT INTO keel_inbox (consumer, message_id, received_at) VALUES ($1, $2, $3)
   ON CONFLICT (consumer, message_id) DO NOTHING RETURNING 1 AS recorded`,
);

export type InboxOutcome<T> = { duplicate: false; result: T } | { duplicate: true };

const consumerName = /^[A-Za-z0-9_.:-]{1,200}$/;

/**
 * Runs `fn` once per (consumer, message id): records the pair in the caller's transaction, so
 * the record commits if and only if `fn`'s effects do. A redelivered message finds the record
 * and `fn` is skipped; the outcome says it was a duplicate. Turns at-least-once delivery into
 * exactly-once effects.
 *
 * Concurrency: two deliveries of one message at once serialise on the primary key; the second
 * waits for the first transaction and then sees a duplicate (or runs, if the first rolled back).
 *
 * Keep records longer than a message can be redelivered: the retry horizon (attempts × the
 * longest backoff) plus the outbox relay's claim time. See `pruneInbox`.
 */
export async function inboxOnce<T>(
  tx: Queryable,
  consumer: string,
  message: Pick<Envelope, 'id'>,
  fn: (tx: Queryable) => Promise<T>,
  options: { clock?: Clock } = {},
): Promise<InboxOutcome<T>> {
  if (typeof consumer !== 'string' || !consumerName.test(consumer)) {
    throw new InvalidArgumentError('consumer', 'a name of [A-Za-z0-9_.:-], 1-200 chars', consumer);
  }
  const receivedAt = new Date((options.clock ?? systemClock).now());
  const { rows } = await tx.query(recordReceipt, [consumer, message.id, receivedAt]);
  if (rows.length === 0) return { duplicate: true };
  return { duplicate: false, result: await fn(tx) };
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
