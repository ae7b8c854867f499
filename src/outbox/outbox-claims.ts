// The relay's statements on the outbox tables: claim a batch, renew its claim, mark it published,
// record a failure, give a claim back. The relay (outbox-relay*.ts) decides when; this file says how.
import type { Queryable, Tx } from '../db/db.ts';
import { preparedStatement } from '../db/prepared-statements.ts';
import type { EnvelopeRow } from '../messaging/envelope-row.ts';

export interface OutboxRow extends EnvelopeRow {
  seq: string;
  destination: string;
  attempts: number;
}

/** A batch a relay holds: one row of `keel_outbox_claims`, leased until `claim_until`. */
export interface Claim {
  id: string;
  rows: OutboxRow[];
}

/** Published rows whose mark is still to be written, and the claims it ends. */
export interface Marks {
  seqs: string[];
  claimIds: string[];
}

/**
 * The claim and the mark are prepared statements (parsed once per connection: ~0.2 ms each of a
 * 500-row batch) that are planned on every execution, with this batch's values. A generic plan
 * would be made once and kept: one made while the outbox was empty scans the whole table after
 * it fills (21-23 ms a claim instead of 2-3 after 50,000 rows). Every transaction that runs
 * either statement starts with this.
 */
const customPlans = `SET LOCAL plan_cache_mode = force_custom_plan`;

/**
 * Serialises claims across relays of one schema. Taken in a statement of its own: the claim's
 * snapshot then starts after the previous claimer committed, and sees its claims. A claim lost
 * in a server crash only makes its rows claimable again, so its commit need not wait for the disk.
 */
const claimLock = `SET LOCAL synchronous_commit = off;
SELECT pg_advisory_xact_lock(hashtextextended('keel_outbox_claim:' || current_schema(), 0))`;

/** Rows that hold back later rows of their key: waiting to retry, parked, or claimed by a relay of an earlier version. */
const heldBy = (t: string): string => `${t}.published_at IS NULL AND ${t}.key IS NOT NULL
      AND (${t}.claim_owner IS NOT NULL OR ${t}.available_at IS NOT NULL OR ${t}.parked_at IS NOT NULL)
      AND (${t}.parked_at IS NOT NULL OR ${t}.available_at > $1 OR ${t}.claim_until > $1)`;

/**
 * $1 now, $2 most rows, $3 the new claim's id, $4 its owner, $5 its end.
 *
 * A row is claimable when it is unpublished, not parked, due, in no live claim, and its key is
 * neither in another owner's live claim nor held back by an earlier row of its key (above). The
 * owner's own live claims do not hold their keys: one owner publishes its claims one after the
 * other, and gives its later claims back when one fails. Every NOT IN below is a hashed lookup,
 * so a candidate costs the same however many rows are held; the exact seq test against held
 * rows runs only for keys that have one.
 */
const claimSql = preparedStatement(`WITH expired AS (
  DELETE FROM keel_outbox_claims WHERE claim_until <= $1),
live AS (
  SELECT owner, seqs, destinations, keys FROM keel_outbox_claims WHERE claim_until > $1),
held AS (
  SELECT h.destination, h.key FROM keel_outbox h WHERE ${heldBy('h')}),
picked AS (
  SELECT o.seq, o.id, o.destination, o.type, o.key, o.payload, o.headers, o.occurred_at, o.hlc, o.attempts
  FROM keel_outbox o
  WHERE o.published_at IS NULL AND o.parked_at IS NULL
    AND (o.available_at IS NULL OR o.available_at <= $1)
    AND (o.claim_until IS NULL OR o.claim_until <= $1)
    AND o.seq NOT IN (SELECT unnest(live.seqs) FROM live)
    AND (o.key IS NULL OR (
      (o.destination, o.key) NOT IN (
        SELECT u.d, u.k FROM live, unnest(live.destinations, live.keys) AS u(d, k) WHERE live.owner <> $4)
      AND ((o.destination, o.key) NOT IN (SELECT held.destination, held.key FROM held)
        OR NOT EXISTS (
          SELECT 1 FROM keel_outbox h
          WHERE h.destination = o.destination AND h.key = o.key AND h.seq < o.seq AND ${heldBy('h')}))))
  ORDER BY o.seq
  LIMIT $2),
claimed AS (
  INSERT INTO keel_outbox_claims (id, owner, claim_until, seqs, destinations, keys)
  SELECT $3, $4, $5, array_agg(seq),
         coalesce(array_agg(destination) FILTER (WHERE key IS NOT NULL), '{}'),
         coalesce(array_agg(key) FILTER (WHERE key IS NOT NULL), '{}')
  FROM picked HAVING count(*) > 0)
SELECT seq::text AS seq, id::text AS id, destination, type, key, payload, headers,
       occurred_at::text AS occurred_at, hlc, attempts
FROM picked ORDER BY picked.seq`);

/**
 * $1 seqs, $2 published at, $3 claim ids. Moves the published rows to `keel_outbox_archive` (or
 * deletes them) and ends the claims that held them. A mark lost in a server crash only
 * republishes its rows (at-least-once, as a relay crash does), so its commit need not wait for
 * the disk: set_config(..., true) lasts for the statement's own transaction. A row published in
 * the meantime by a relay of an earlier version (`published_at` set in place) is left to it.
 */
const markText = (deleteRows: boolean): string => `WITH async AS (
  SELECT set_config('synchronous_commit', 'off', true) AS v, $2::timestamptz AS at),
marked AS (
  DELETE FROM keel_outbox WHERE seq = ANY($1::bigint[]) AND published_at IS NULL AND EXISTS (SELECT 1 FROM async)${
    deleteRows
      ? ')'
      : `
  RETURNING seq, id, destination, type, key, payload, headers, occurred_at, hlc, created_at, attempts, last_error),
archived AS (
  INSERT INTO keel_outbox_archive (seq, id, destination, type, key, payload, headers, occurred_at, hlc,
                                   created_at, attempts, last_error, published_at)
  SELECT m.seq, m.id, m.destination, m.type, m.key, m.payload, m.headers, m.occurred_at, m.hlc,
         m.created_at, m.attempts, m.last_error, async.at
  FROM marked m, async)`
  }
DELETE FROM keel_outbox_claims WHERE id = ANY($3::uuid[]) AND EXISTS (SELECT 1 FROM async)`;
const markDeleting = preparedStatement(markText(true));
const markArchiving = preparedStatement(markText(false));
const markSql = (deleteRows: boolean): string => (deleteRows ? markDeleting : markArchiving);

export interface ClaimRequest {
  owner: string;
  id: string;
  now: Date;
  until: Date;
  limit: number;
  /** Marks of earlier batches, written in the same transaction before the claim. */
  marks?: Marks | undefined;
  deleteRows: boolean;
}

/**
 * Writes `marks` and claims up to `limit` rows, in one transaction whose statements are sent
 * together (the mark first, so the claim lock is held only for the claim). Returns the rows in
 * `seq` order; no claim row is written when none is claimable.
 */
export async function claimBatch(
  db: { transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> },
  request: ClaimRequest,
): Promise<Claim> {
  const rows = await db.transaction(async (tx) => {
    const marks = request.marks;
    const [, , , claimed] = await Promise.all([
      tx.query(customPlans),
      marks === undefined || marks.claimIds.length === 0
        ? undefined
        : tx.query(markSql(request.deleteRows), [marks.seqs, request.now, marks.claimIds]),
      tx.query(claimLock),
      tx.query<OutboxRow>(claimSql, [request.now, request.limit, request.id, request.owner, request.until]),
    ]);
    return claimed.rows;
  });
  return { id: request.id, rows };
}

/** Moves published rows to the archive (or deletes them) and ends their claims, in one statement (and its plan setting). */
export async function markPublished(
  db: { transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> },
  marks: Marks,
  now: Date,
  deleteRows: boolean,
): Promise<void> {
  if (marks.claimIds.length === 0) return;
  await db.transaction((tx) =>
    Promise.all([tx.query(customPlans), tx.query(markSql(deleteRows), [marks.seqs, now, marks.claimIds])]),
  );
}

/**
 * Records a failed publish of `rows` of a claim that is still live (else another relay may hold
 * them now, and they are left to it): the attempt counts when `charged`, the row waits until
 * `availableAt`, and is parked when `park`.
 */
export async function recordFailure(
  db: Queryable,
  claimId: string,
  rows: readonly OutboxRow[],
  failure: { error: string; now: Date; availableAt: Date; charged: boolean; park: boolean },
): Promise<void> {
  await db.query(
    `UPDATE keel_outbox
     SET attempts = attempts + $5, last_error = $3, available_at = $4,
         parked_at = CASE WHEN $6 THEN $7::timestamptz END
     WHERE seq = ANY($1::bigint[])
       AND EXISTS (SELECT 1 FROM keel_outbox_claims c WHERE c.id = $2 AND c.claim_until > $7)`,
    [
      rows.map((r) => r.seq),
      claimId,
      failure.error,
      failure.availableAt,
      failure.charged ? 1 : 0,
      failure.park,
      failure.now,
    ],
  );
}

/**
 * Extends a live claim to `until`; false when it is no longer live at `now` (expired, ended, or
 * deleted by another relay's claim), which it never revives: the rows may be another relay's by
 * now. Taken under the claim lock, so it is ordered against claims: a claim either sees the
 * extended lease or ran before it, and then the renewal finds the expired claim gone. A claim row
 * locked meanwhile is being ended by its own relay's mark, which in a claim's transaction waits
 * for the claim lock after locking it: skipped (false), not waited for, or the two deadlock.
 */
export async function renewClaim(
  db: { transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> },
  claimId: string,
  now: Date,
  until: Date,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [, renewed] = await Promise.all([
      tx.query(claimLock),
      tx.query(
        `UPDATE keel_outbox_claims SET claim_until = $3
         WHERE id = (SELECT id FROM keel_outbox_claims WHERE id = $1 AND claim_until > $2 FOR UPDATE SKIP LOCKED)
         RETURNING id`,
        [claimId, now, until],
      ),
    ]);
    return renewed.rows.length > 0;
  });
}

/** Ends a claim without marking: its rows that are not published become claimable again. */
export async function releaseClaim(db: Queryable, claimId: string): Promise<void> {
  await db.query('DELETE FROM keel_outbox_claims WHERE id = $1', [claimId]);
}

export function groupByDestination(rows: OutboxRow[]): Map<string, OutboxRow[]> {
  const groups = new Map<string, OutboxRow[]>();
  for (const row of rows) {
    const group = groups.get(row.destination);
    if (group) group.push(row);
    else groups.set(row.destination, [row]);
  }
  return groups;
}
