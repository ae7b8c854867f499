import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';

/** What the metrics need: read from `keel_outbox` alone, never from the archive. */
export interface OutboxBacklog {
  /** Rows committed and not yet published (parked rows not included). */
  backlog: number;
  /** Rows that failed `maxAttempts` times and wait for an operator (`keel outbox retry`). */
  parked: number;
  /** How long the oldest unpublished row has waited, in ms; 0 when the backlog is empty. */
  oldestUnpublishedAgeMs: number;
}

export interface OutboxStatus extends OutboxBacklog {
  /** Published rows still kept (see `retentionMs`): in the archive, and any marked in place by earlier versions. */
  published: number;
}

/** `outboxStatus` with `published: 'estimate'`: `published` is null while PostgreSQL has no estimate. */
export interface OutboxStatusEstimate extends OutboxBacklog {
  /** As `OutboxStatus.published`, the archive's part PostgreSQL's estimate; null before its first ANALYZE. */
  published: number | null;
}

export interface OutboxStatusOptions {
  /**
   * `exact` (default) counts the archive: a scan of every row kept for `retentionMs`, millions on
   * a busy outbox, so not for anything polled. `estimate` reads the archive's size from the
   * planner's statistics instead (as `EXPLAIN` estimates a count), whatever its size.
   */
  published?: 'exact' | 'estimate';
}

const unpublished = `published_at IS NULL AND parked_at IS NULL`;

/**
 * The archive's row count as the planner estimates it: the density seen at the last VACUUM or
 * ANALYZE times the table's pages now. NULL when there is none yet: reltuples is -1 before the
 * first (PostgreSQL 14+), or the table has pages that were never measured.
 */
const archiveEstimate = `(SELECT CASE
     WHEN c.reltuples < 0 THEN NULL
     WHEN c.relpages = 0 THEN CASE WHEN pg_relation_size(c.oid) = 0 THEN 0 END
     ELSE round(c.reltuples::float8 / c.relpages
                * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
   END
   FROM pg_class c WHERE c.oid = 'keel_outbox_archive'::regclass)`;

/**
 * The backlog in numbers, for the metrics endpoint and anything polled: one query of
 * `keel_outbox`, which holds only rows still to publish, parked ones, and any published rows
 * earlier versions marked in place (skipped here). The archive is not read.
 */
export async function outboxBacklog(db: Queryable, clock: Clock = systemClock): Promise<OutboxBacklog> {
  const { rows } = await db.query<{ backlog: string; parked: string; oldest: Date | string | null }>(
    `SELECT count(*) FILTER (WHERE parked_at IS NULL)::text AS backlog,
            count(*) FILTER (WHERE parked_at IS NOT NULL)::text AS parked,
            min(created_at) FILTER (WHERE parked_at IS NULL) AS oldest
     FROM keel_outbox WHERE published_at IS NULL`,
  );
  return backlogOf(rows[0], clock);
}

/**
 * The outbox's health in numbers, for `keel outbox status`: the backlog and the published rows
 * kept, counted exactly (a scan of the archive) unless `published: 'estimate'` is given. The
 * metrics read `outboxBacklog`, which does not read the archive at all.
 */
export async function outboxStatus(db: Queryable, clock?: Clock): Promise<OutboxStatus>;
export async function outboxStatus(
  db: Queryable,
  clock: Clock | undefined,
  options: OutboxStatusOptions & { published: 'estimate' },
): Promise<OutboxStatusEstimate>;
export async function outboxStatus(
  db: Queryable,
  clock?: Clock,
  options?: OutboxStatusOptions,
): Promise<OutboxStatus | OutboxStatusEstimate>;
export async function outboxStatus(
  db: Queryable,
  clock: Clock = systemClock,
  options: OutboxStatusOptions = {},
): Promise<OutboxStatus | OutboxStatusEstimate> {
  const mode = options.published ?? 'exact';
  if (mode !== 'exact' && mode !== 'estimate') {
    throw new InvalidArgumentError('published', "'exact' or 'estimate'", mode);
  }
  const archived = mode === 'exact' ? `(SELECT count(*) FROM keel_outbox_archive)` : archiveEstimate;
  // One statement: the figures come from one snapshot.
  const { rows } = await db.query<{
    backlog: string;
    parked: string;
    published: string | null;
    oldest: Date | string | null;
  }>(
    `SELECT count(*) FILTER (WHERE ${unpublished})::text AS backlog,
            count(*) FILTER (WHERE parked_at IS NOT NULL)::text AS parked,
            (count(*) FILTER (WHERE published_at IS NOT NULL) + ${archived})::text AS published,
            min(created_at) FILTER (WHERE ${unpublished}) AS oldest
     FROM keel_outbox`,
  );
  const row = rows[0];
  const published = row?.published == null ? null : Number(row.published);
  return { ...backlogOf(row, clock), published: mode === 'exact' ? (published ?? 0) : published };
}

function backlogOf(
  row: { backlog: string; parked: string; oldest: Date | string | null } | undefined,
  clock: Clock,
): OutboxBacklog {
  const oldest = row?.oldest == null ? undefined : new Date(row.oldest).getTime();
  return {
    backlog: Number(row?.backlog ?? 0),
    parked: Number(row?.parked ?? 0),
    oldestUnpublishedAgeMs: oldest === undefined ? 0 : Math.max(0, clock.now() - oldest),
  };
}

/** Gives parked rows (all, or the given ids) a fresh start: the relay publishes them again. */
export async function retryParked(db: Queryable, ids?: readonly string[]): Promise<number> {
  if (ids !== undefined) checkIds(ids);
  const { rowCount } = await db.query(
    `UPDATE keel_outbox SET parked_at = NULL, attempts = 0, available_at = NULL, last_error = NULL
     WHERE parked_at IS NOT NULL AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))`,
    [ids === undefined ? null : [...ids]],
  );
  return rowCount;
}

/** Where a message that was not parked is: what `retryParkedById` says of an id it did not retry. */
export type NotParkedState =
  /** In `keel_outbox`, not parked: waiting to be published (or claimed, or waiting for a retry). */
  | 'unpublished'
  /** Published: in the archive, or marked in place by a relay of an earlier version. */
  | 'published'
  /** Not in the outbox: never written, or published and pruned already. */
  | 'missing';

/**
 * `retryParked` for the given ids, saying what became of each: the ids retried, and for each
 * other one where its message is, so an operator who mistyped an id or retried a row twice
 * hears of it. Ids are reported as given, each once, in the order given.
 */
export async function retryParkedById(
  db: Queryable,
  ids: readonly string[],
): Promise<{ retried: string[]; notRetried: { id: string; state: NotParkedState }[] }> {
  checkIds(ids);
  const unique = [...new Map(ids.map((id) => [id.toLowerCase(), id])).values()];
  // One statement: the states are read in the snapshot the update started from.
  const { rows } = await db.query<{ n: number; state: NotParkedState | 'retried' }>(
    `WITH retried AS (
       UPDATE keel_outbox SET parked_at = NULL, attempts = 0, available_at = NULL, last_error = NULL
       WHERE parked_at IS NOT NULL AND id = ANY($1::uuid[])
       RETURNING id)
     SELECT given.n::int AS n,
            CASE WHEN EXISTS (SELECT 1 FROM retried r WHERE r.id = given.id) THEN 'retried'
                 WHEN o.published_at IS NOT NULL THEN 'published'
                 WHEN o.id IS NOT NULL THEN 'unpublished'
                 WHEN EXISTS (SELECT 1 FROM keel_outbox_archive a WHERE a.id = given.id) THEN 'published'
                 ELSE 'missing' END AS state
     FROM unnest($1::uuid[]) WITH ORDINALITY AS given(id, n)
     LEFT JOIN keel_outbox o ON o.id = given.id
     ORDER BY given.n`,
    [unique],
  );
  const retried: string[] = [];
  const notRetried: { id: string; state: NotParkedState }[] = [];
  for (const row of rows) {
    const id = unique[row.n - 1]!;
    if (row.state === 'retried') retried.push(id);
    else notRetried.push({ id, state: row.state });
  }
  return { retried, notRetried };
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkIds(ids: readonly string[]): void {
  if (!Array.isArray(ids)) throw new InvalidArgumentError('ids', 'an array of message ids', ids);
  for (const [index, id] of ids.entries()) {
    if (typeof id !== 'string' || !uuid.test(id)) {
      throw new InvalidArgumentError(`ids[${index}]`, 'a message id (a UUID)', id);
    }
  }
}
