/**
 * A transaction that can send a statement without waiting for its answer. keel's own `Tx`
 * handles can; a foreign transaction (a pg client in BEGIN, Kysely) cannot, and its callers
 * await the statement as usual.
 *
 * Why: on the pg backend keel's connections pipeline, so a statement sent this way travels with
 * whatever comes next — the following statement, or the COMMIT — instead of costing a round trip
 * of its own. A write whose result the caller does not need (an outbox row, a stored response)
 * then adds almost nothing to the transaction's latency. The answer is still checked: the
 * transaction rejects with the statement's error instead of reporting a commit.
 */
export interface SendsWithoutWaiting {
  /** Sends one statement in the open transaction; its failure rejects the transaction. */
  sendWithoutWaiting(sql: string, params: readonly unknown[]): void;
}

export function canSendWithoutWaiting(tx: unknown): tx is SendsWithoutWaiting {
  return typeof (tx as Partial<SendsWithoutWaiting> | null)?.sendWithoutWaiting === 'function';
}

/**
 * Runs a write whose answer the caller does not need: sent without waiting in a keel `Tx` (its
 * failure then rejects the transaction), awaited on anything else (its failure rejects here).
 */
export async function writeWithoutWaiting(
  q: { query(sql: string, params: unknown[]): PromiseLike<unknown> },
  sql: string,
  params: unknown[],
): Promise<void> {
  if (canSendWithoutWaiting(q)) q.sendWithoutWaiting(sql, params);
  else await q.query(sql, params);
}
