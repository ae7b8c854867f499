import { preparedStatement } from './prepared-statements.ts';

/**
 * A transaction that can send NOTIFYs after it commits instead of inside it. keel's own `Tx`
 * handles can; a foreign transaction (a pg client in BEGIN, Kysely) cannot, and gets the NOTIFY
 * inside the transaction as before.
 *
 * Why: PostgreSQL serialises the commits of transactions that NOTIFY (one lock, held through the
 * commit's WAL flush), so concurrent writers that each notify commit one after another instead of
 * sharing a flush. A NOTIFY sent after the commit, on its own, holds that lock only for a moment.
 * Listeners see no difference: a NOTIFY is only ever delivered after a commit, and a wake-up lost
 * in a crash between the two is caught by the listener's polling fallback.
 */
export interface NotifiesAfterCommit {
  /** Queues one NOTIFY for after the commit; repeats of a (channel, payload) are sent once. */
  notifyAfterCommit(channel: string, payload?: string): void;
}

export function canNotifyAfterCommit(tx: unknown): tx is NotifiesAfterCommit {
  return typeof (tx as Partial<NotifiesAfterCommit> | null)?.notifyAfterCommit === 'function';
}

// Prepared on pg: one is sent every few commits under load, and its plan reads no table.
const notifySql = preparedStatement(
  `SELECT pg_notify(n.channel, n.payload)
   FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit,
     unnest($1::text[], $2::text[]) AS n(channel, payload)`,
);

/**
 * Sends queued notifications in one statement. Best effort: a lost wake-up only delays a poller.
 *
 * The NOTIFY's own transaction commits without waiting for its WAL flush (synchronous_commit off
 * for it alone): queueing a notification takes a transaction id, so its commit writes a commit
 * record, and waiting for that record's fsync would cost a flush per wake-up for nothing — the
 * listener is told at the commit either way, and a wake-up lost in a crash is one a poller catches.
 */
export async function sendNotifications(
  query: (sql: string, params: readonly unknown[]) => Promise<unknown>,
  notifications: ReadonlyMap<string, { channel: string; payload: string }>,
): Promise<void> {
  if (notifications.size === 0) return;
  const list = [...notifications.values()];
  await query(notifySql, [list.map((n) => n.channel), list.map((n) => n.payload)]);
}
