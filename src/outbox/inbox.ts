import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { systemClock, type Clock } from '../time/index.ts';

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
  const { rows } = await tx.query(
    `INSERT INTO keel_inbox (consumer, message_id, received_at) VALUES ($1, $2, $3)
     ON CONFLICT (consumer, message_id) DO NOTHING RETURNING 1 AS recorded`,
    [consumer, message.id, receivedAt],
  );
  if (rows.length === 0) return { duplicate: true };
  return { duplicate: false, result: await fn(tx) };
}

/**
 * Deletes inbox records older than `retentionMs` (default 7 days), `batchSize` rows per
 * statement so a large backlog never holds long locks. Returns how many it deleted.
 */
export async function pruneInbox(
  db: Queryable,
  options: { retentionMs?: number; batchSize?: number; clock?: Clock } = {},
): Promise<number> {
  const retentionMs = options.retentionMs ?? 7 * 24 * 3600 * 1000;
  const batchSize = options.batchSize ?? 10_000;
  if (!Number.isFinite(retentionMs) || retentionMs < 0) {
    throw new InvalidArgumentError('retentionMs', 'a number of ms >= 0', retentionMs);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new InvalidArgumentError('batchSize', 'an integer >= 1', batchSize);
  const cutoff = new Date((options.clock ?? systemClock).now() - retentionMs);
  let total = 0;
  for (;;) {
    const { rowCount } = await db.query(
      `DELETE FROM keel_inbox WHERE (consumer, message_id) IN (
         SELECT consumer, message_id FROM keel_inbox WHERE received_at < $1 LIMIT $2)`,
      [cutoff, batchSize],
    );
    total += rowCount;
    if (rowCount < batchSize) return total;
  }
}

/** `inbox.once(tx, consumer, message, fn)`: the same as `inboxOnce`, as an object to pass around. */
export const inbox = { once: inboxOnce, prune: pruneInbox } as const;
