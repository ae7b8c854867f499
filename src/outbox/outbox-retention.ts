import { runCleanerBatches } from '../db/cleaner-batches.ts';
import type { Db } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';

export interface PruneOptions {
  /** Keep rows this long, in ms. */
  retentionMs?: number;
  /** Rows deleted per statement, so a large backlog never holds long locks. Default 1 000. */
  batchSize?: number;
  clock?: Clock;
}

/**
 * Runs `deleteSql` on `table` (with `$1` the cutoff and `$2` the batch size) until it deletes
 * fewer than `batchSize` rows, `batchSize` at a time, by one cleaner at a time: the table's
 * cleaner lock (`runCleanerBatches`); while another process is cleaning, this one stops at once
 * and returns what it deleted so far.
 */
export function pruneInBatches(
  db: Db,
  table: string,
  deleteSql: string,
  options: { cutoff: Date; batchSize: number },
): Promise<{ deleted: number; busy: boolean }> {
  return runCleanerBatches(
    db,
    table,
    async (tx) => (await tx.query(deleteSql, [options.cutoff, options.batchSize])).rowCount,
    options,
  );
}

export function resolvePrune(
  options: PruneOptions,
  defaultRetentionMs: number,
): { retentionMs: number; batchSize: number; clock: Clock } {
  const retentionMs = options.retentionMs ?? defaultRetentionMs;
  const batchSize = options.batchSize ?? 1000;
  if (typeof retentionMs !== 'number' || !Number.isFinite(retentionMs) || retentionMs < 0) {
    throw new InvalidArgumentError('retentionMs', 'a number of ms >= 0', retentionMs);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', 'an integer >= 1', batchSize);
  }
  return { retentionMs, batchSize, clock: options.clock ?? systemClock };
}

/** Default retention of published outbox rows: one day, long enough to look into an incident. */
export const defaultOutboxRetentionMs = 24 * 3600 * 1000;

/**
 * Deletes outbox rows published more than `retentionMs` ago (default one day), in batches,
 * by one cleaner at a time (an advisory lock per schema; on PGlite there is one process anyway):
 * from `keel_outbox_archive`, where the relay moves the rows it publishes, then rows marked in
 * place in `keel_outbox` by relays of earlier versions. Unpublished and parked rows are never
 * deleted. Returns how many rows it deleted. The relay runs this on its own (`retentionMs`,
 * `cleanupIntervalMs`); call it yourself when it does not.
 */
export async function pruneOutbox(db: Db, options: PruneOptions = {}): Promise<number> {
  const { retentionMs, batchSize, clock } = resolvePrune(options, defaultOutboxRetentionMs);
  const batches = { cutoff: new Date(clock.now() - retentionMs), batchSize };
  // The archive has no key: a batch is found by its rows' places (ctid). Only the cleaner
  // deletes there and nothing updates it, so a place still holds the row found in it. Oldest
  // first, through the index, which skips the entries of rows earlier batches deleted.
  const archived = await pruneInBatches(
    db,
    'keel_outbox',
    `DELETE FROM keel_outbox_archive WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM keel_outbox_archive WHERE published_at < $1 ORDER BY published_at LIMIT $2))`,
    batches,
  );
  if (archived.busy) return archived.deleted;
  const markedInPlace = await pruneInBatches(
    db,
    'keel_outbox',
    `DELETE FROM keel_outbox WHERE seq IN (
       SELECT seq FROM keel_outbox WHERE published_at IS NOT NULL AND published_at < $1 LIMIT $2)`,
    batches,
  );
  return archived.deleted + markedInPlace.deleted;
}
