import type { QueryResult, Row } from './db.ts';

/**
 * A transaction that can run a read right after its commit, on the same connection. keel's own
 * `Tx` handles can; a foreign transaction cannot.
 *
 * Why: on the pg backend keel's connections pipeline, so the read goes out with the COMMIT and
 * its answer comes back with the commit's: what the caller needs from after the commit (the WAL
 * position a consistency token is made of) costs no round trip and no second connection.
 */
export interface ReadsAfterCommit {
  /**
   * Queues `sql` to run once the transaction has committed, in a read-only transaction of its
   * own (a write in it fails). Resolves with its result; with `undefined` when the transaction
   * did not commit or the read failed (run it again yourself if you need it then).
   */
  readAfterCommit<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R> | undefined>;
}

export function canReadAfterCommit(tx: unknown): tx is ReadsAfterCommit {
  return typeof (tx as Partial<ReadsAfterCommit> | null)?.readAfterCommit === 'function';
}
