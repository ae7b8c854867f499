import { runCleanerBatches } from '../../../db/cleaner-batches.ts';
import type { Db, Tx } from '../../../db/db.ts';
import { writeWithoutWaiting } from '../../../db/send-without-waiting.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { assertQueueName } from './pg-queue.ts';

/**
 * How far a trim may go. Every bound given must allow an entry's deletion (each is a promise
 * of what stays); at least one of `before`, `olderThanMs` and `keepLast` is required. To trim by
 * whichever of two bounds reaches further (Kafka's `retention.ms` with `retention.bytes`), trim
 * once with each.
 */
export interface TrimBounds {
  /** Entries at positions below this one may go (Kafka's `deleteRecords`, Redis `XTRIM MINID`). */
  before?: number;
  /**
   * Entries appended more than this many ms ago may go (Kafka's `retention.ms`), measured by the
   * database's clock, which stamped `appendedAt`. A trim removes a prefix, so an old entry behind
   * a younger one waits for it: concurrent appends can commit with their start times out of order.
   */
  olderThanMs?: number;
  /** The newest `keepLast` entries stay (Redis `XTRIM MAXLEN`). 0 keeps none. */
  keepLast?: number;
  /**
   * Entries these projections (`ProjectionRunner` names) have not applied stay, whatever the
   * other bounds allow: the trim stops at the slowest one's stored position. A named projection
   * with no stored position yet has applied nothing, so it keeps everything.
   * `'any-projection'`: every projection with a stored position on this stream (a
   * `ProjectionRunner` stores one, at 0, the first time it looks for entries); a retired one
   * holds the stream back until its row is deleted from `keel_stream_positions`.
   * Default: none (projections are not asked).
   */
  keepUnappliedBy?: 'any-projection' | readonly string[];
}

export interface TrimOptions extends TrimBounds {
  /**
   * Most entries deleted per transaction, so that no transaction grows large or holds its locks
   * for long: appends to the stream wait only for a batch's head-row update and commit, but with
   * `keepUnappliedBy` a projection moving its position waits for the whole batch. Default 10 000.
   */
  batchSize?: number;
  /** Stops the trim between batches; it resolves with what it deleted until then. */
  signal?: AbortSignal;
}

export interface ResolvedTrimOptions {
  before: number | undefined;
  olderThanMs: number | undefined;
  keepLast: number | undefined;
  keepUnappliedBy: 'any-projection' | readonly string[] | undefined;
  batchSize: number;
  signal: AbortSignal | undefined;
}

// Each batch pays a transaction, its commit, the cleaner lock and three round trips. At 1 000 a
// batch, 200 000 entries took 200 of them and 4-8 times as long as one DELETE of the same rows;
// at 10 000 a batch's DELETE still takes only 4-7 ms on PostgreSQL (docs/benchmarks.md#stream).
export const defaultTrimBatchSize = 10_000;

/** Validates trim options at the boundary; `path` prefixes the field names errors give. */
export function resolveTrimOptions(options: TrimOptions, path = ''): ResolvedTrimOptions {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(path === '' ? 'options' : path.slice(0, -1), 'an object', options);
  const { before, olderThanMs, keepLast, keepUnappliedBy, signal } = options;
  const batchSize = options.batchSize ?? defaultTrimBatchSize;
  const nonNegativeInteger = (field: string, value: unknown): void => {
    if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0))
      throw new InvalidArgumentError(path + field, 'an integer >= 0', value);
  };
  nonNegativeInteger('before', before);
  nonNegativeInteger('keepLast', keepLast);
  if (
    olderThanMs !== undefined &&
    (typeof olderThanMs !== 'number' || !Number.isFinite(olderThanMs) || olderThanMs < 0)
  )
    throw new InvalidArgumentError(path + 'olderThanMs', 'a number of ms >= 0', olderThanMs);
  if (before === undefined && olderThanMs === undefined && keepLast === undefined)
    throw new InvalidArgumentError(path + 'before', 'at least one of before, olderThanMs or keepLast');
  if (keepUnappliedBy !== undefined && keepUnappliedBy !== 'any-projection') {
    const names: unknown = keepUnappliedBy;
    if (!Array.isArray(names))
      throw new InvalidArgumentError(
        path + 'keepUnappliedBy',
        "'any-projection' or a list of projection names",
        keepUnappliedBy,
      );
    keepUnappliedBy.forEach((name, i) => assertQueueName(name, `${path}keepUnappliedBy.${i}`));
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    throw new InvalidArgumentError(path + 'batchSize', 'an integer >= 1', batchSize);
  return { before, olderThanMs, keepLast, keepUnappliedBy, batchSize, signal };
}

// Taken FOR SHARE: a projection's batch, or rebuild(), moving its position (a row lock) waits
// for this trim batch, and this batch waits for one in flight, so the position read is the one
// that holds while the entries go: a rebuild cannot set a position the trim is deleting past.
const projectionPositions = `SELECT projection, position::text AS position FROM keel_stream_positions
  WHERE stream = $1 AND ($2::text[] IS NULL OR projection = ANY($2::text[])) FOR SHARE`;

// The statements of a batch take `$1` stream, `$2` the last position every bound allows and
// `$3` the batch size. Each reads the stream's first position from its head row itself: once the
// batch holds the cleaner lock no other trim moves it, so they agree with each other, and with
// what another trim did between two batches, without a round trip to read it. Scalar subqueries,
// so both ends of the range are index conditions of the primary key whatever the statistics.
const batchFirst = '(SELECT first_position FROM keel_stream_heads WHERE stream = $1)';
const batchLast =
  '(SELECT least($2::bigint, first_position - 1 + $3::bigint) FROM keel_stream_heads WHERE stream = $1)';

// The first entry too young to go: a trim deletes a prefix, so it stops before it.
const firstYoungEntry = `SELECT min(position)::text AS position FROM keel_stream
  WHERE stream = $1 AND position >= ${batchFirst} AND position <= ${batchLast}
    AND appended_at >= now() - $4::float8 * interval '1 millisecond'`;

// No RETURNING: the command tag counts the rows, while RETURNING (even `RETURNING 1`) fetches each
// deleted row again and, in a CTE, keeps it in a tuplestore: twice the buffer reads and the time.
const deleteBatch = `DELETE FROM keel_stream
  WHERE stream = $1 AND position >= ${batchFirst} AND position <= ${batchLast}`;

// The batch's last statement, after the DELETE: the head row's lock, which appenders of this
// stream wait for, is taken here and held only to the commit; not at all when the batch had
// nothing to delete.
const moveFirstPosition = `UPDATE keel_stream_heads SET first_position = least($2::bigint, first_position - 1 + $3::bigint) + 1
  WHERE stream = $1 AND first_position <= $2::bigint`;

/** Projections whose stored position stopped a trim that its other bounds let go further. */
export interface TrimHeldBy {
  /** Their (lowest) stored position: the trim kept every entry after it. */
  position: number;
  /** Every protected projection at that position (a named one with no stored position at 0). */
  projections: string[];
}

/** What a trim did: entries deleted, and whether projections' positions were what stopped it. */
export interface TrimOutcome {
  deleted: number;
  /** Set when `keepUnappliedBy` was the bound that stopped the trim's last batch short. */
  heldBy: TrimHeldBy | undefined;
}

/**
 * Deletes a prefix of `stream` in batches (see `PgStream.trim`). Each batch, in a transaction
 * holding the stream's cleaner lock: finds how far it may go, deletes that range by its key, and
 * moves the head row's `first_position` past it, so readers see the entries and the new start
 * change together. The head is read once, by the first batch: its last position then is all the
 * trim may delete.
 */
export async function trimStream(db: Db, stream: string, options: ResolvedTrimOptions): Promise<TrimOutcome> {
  // The head row when the trim began. `lastAtStart` bounds it: entries appended while it runs
  // are not its to delete. `first`, moved on by what each batch deletes, stays at or below the
  // stream's, which only grows (by this trim or another): a batch whose bounds end below it has
  // nothing to delete and asks nothing more (the FOR SHARE read takes row locks).
  let head: { first: number; lastAtStart: number } | undefined;
  let heldBy: TrimHeldBy | undefined;
  let reached = false;
  const batch = async (tx: Tx): Promise<number> => {
    heldBy = undefined;
    reached = true;
    if (head === undefined) {
      const { rows } = await tx.query<{ first: string; last: string }>(
        'SELECT first_position::text AS first, position::text AS last FROM keel_stream_heads WHERE stream = $1',
        [stream],
      );
      if (rows[0] === undefined) return 0;
      head = { first: Number(rows[0].first), lastAtStart: Number(rows[0].last) };
    }
    const { lastAtStart } = head;
    let upTo = lastAtStart;
    if (options.before !== undefined) upTo = Math.min(upTo, options.before - 1);
    if (options.keepLast !== undefined) upTo = Math.min(upTo, lastAtStart - options.keepLast);
    if (upTo >= head.first && options.keepUnappliedBy !== undefined) {
      const slowest = await slowestPositions(tx, stream, options.keepUnappliedBy);
      if (slowest !== undefined && slowest.position < upTo) {
        upTo = slowest.position;
        heldBy = slowest;
      }
    }
    if (upTo >= head.first && options.olderThanMs !== undefined) {
      const young = await tx.query<{ position: string | null }>(firstYoungEntry, [
        stream,
        upTo,
        options.batchSize,
        options.olderThanMs,
      ]);
      const position = young.rows[0]?.position;
      if (position !== null && position !== undefined) upTo = Number(position) - 1;
      // An entry too young to go stopped it first: the projections were not what held it.
      if (heldBy !== undefined && upTo < heldBy.position) heldBy = undefined;
    }
    if (upTo < head.first) return 0;
    const { rowCount } = await tx.query(deleteBatch, [stream, upTo, options.batchSize]);
    reached = rowCount < options.batchSize;
    // Nothing is read from it: on pg it travels with the COMMIT instead of a round trip of its own.
    await writeWithoutWaiting(tx, moveFirstPosition, [stream, upTo, options.batchSize]);
    head.first += rowCount;
    return rowCount;
  };
  const { deleted } = await runCleanerBatches(db, `keel_stream:${stream}`, batch, options);
  // Only a batch that reached its bound ends a trim that was not stopped (signal, another cleaner).
  return { deleted, heldBy: reached ? heldBy : undefined };
}

/**
 * The lowest position the protected projections have applied up to (0: one applied nothing), and
 * which are at it; undefined when none is stored ('any-projection' on a stream without any).
 */
async function slowestPositions(
  tx: Tx,
  stream: string,
  protect: 'any-projection' | readonly string[],
): Promise<TrimHeldBy | undefined> {
  const names = protect === 'any-projection' ? null : [...new Set(protect)];
  const { rows } = await tx.query<{ projection: string; position: string }>(projectionPositions, [
    stream,
    names,
  ]);
  const stored = new Map(rows.map((row) => [row.projection, Number(row.position)]));
  const positions: [string, number][] =
    names === null ? [...stored] : names.map((name) => [name, stored.get(name) ?? 0]);
  if (positions.length === 0) return undefined;
  const position = Math.min(...positions.map(([, at]) => at));
  const projections = positions.filter(([, at]) => at === position).map(([name]) => name);
  return { position, projections: projections.sort() };
}
