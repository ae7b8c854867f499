import type { Queryable } from '../db/db.ts';
import { systemClock, type Clock } from '../time/index.ts';

export interface OutboxStatus {
  /** Rows committed and not yet published (parked rows not included). */
  backlog: number;
  /** Rows that failed `maxAttempts` times and wait for an operator (`keel outbox retry`). */
  parked: number;
  /** How long the oldest unpublished row has waited, in ms; 0 when the backlog is empty. */
  oldestUnpublishedAgeMs: number;
  /** Published rows still kept (see `retentionMs`): in the archive, and any marked in place by earlier versions. */
  published: number;
}

/** The outbox's health in numbers: for `keel outbox status` and the metrics endpoint. */
export async function outboxStatus(db: Queryable, clock: Clock = systemClock): Promise<OutboxStatus> {
  const { rows } = await db.query<{
    backlog: string;
    parked: string;
    published: string;
    oldest: Date | string | null;
  }>(
    `SELECT count(*) FILTER (WHERE published_at IS NULL AND parked_at IS NULL)::text AS backlog,
            count(*) FILTER (WHERE parked_at IS NOT NULL)::text AS parked,
            (count(*) FILTER (WHERE published_at IS NOT NULL)
              + (SELECT count(*) FROM keel_outbox_archive))::text AS published,
            min(created_at) FILTER (WHERE published_at IS NULL AND parked_at IS NULL) AS oldest
     FROM keel_outbox`,
  );
  const row = rows[0];
  const oldest = row?.oldest == null ? undefined : new Date(row.oldest).getTime();
  return {
    backlog: Number(row?.backlog ?? 0),
    parked: Number(row?.parked ?? 0),
    published: Number(row?.published ?? 0),
    oldestUnpublishedAgeMs: oldest === undefined ? 0 : Math.max(0, clock.now() - oldest),
  };
}

/** Gives parked rows (all, or the given ids) a fresh start: the relay publishes them again. */
export async function retryParked(db: Queryable, ids?: readonly string[]): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE keel_outbox SET parked_at = NULL, attempts = 0, available_at = NULL, last_error = NULL
     WHERE parked_at IS NOT NULL AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))`,
    [ids === undefined ? null : [...ids]],
  );
  return rowCount;
}
