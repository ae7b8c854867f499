import type { Db, Tx } from './db.ts';

/** The lock key of the cleaner named `$1`, per schema: schemas sharing a server never contend. */
const cleanerLock = `hashtextextended('keel_cleaner:' || current_schema() || ':' || $1, 0)`;

export interface CleanerBatchesOptions {
  /** Most rows one batch deletes: a batch that deletes fewer ends the run. */
  batchSize: number;
  /** Checked before each batch: once aborted, no further batch starts; those done stay done. */
  signal?: AbortSignal;
}

/**
 * The loop every keel cleaner shares (outbox, inbox, stream retention). Runs `batch` until it
 * deletes fewer than `batchSize` rows, each call in a transaction of its own that first takes
 * the cleaner lock named `cleaner` with `pg_try_advisory_xact_lock`: while another process holds
 * it, this one stops at once (`busy`) and returns what it deleted so far, so one cleaner works at
 * a time however many processes run one, and none waits behind another. Small transactions keep
 * a large backlog from holding locks for long.
 */
export async function runCleanerBatches(
  db: Db,
  cleaner: string,
  batch: (tx: Tx) => Promise<number>,
  options: CleanerBatchesOptions,
): Promise<{ deleted: number; busy: boolean }> {
  let deleted = 0;
  for (;;) {
    if (options.signal?.aborted === true) return { deleted, busy: false };
    const count = await db.transaction(async (tx) => {
      const { rows } = await tx.query<{ locked: boolean }>(
        `SELECT pg_try_advisory_xact_lock(${cleanerLock}) AS locked`,
        [cleaner],
      );
      if (rows[0]?.locked !== true) return undefined;
      return batch(tx);
    });
    if (count === undefined) return { deleted, busy: true };
    deleted += count;
    if (count < options.batchSize) return { deleted, busy: false };
  }
}
