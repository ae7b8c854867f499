import type { Db, Queryable } from '../../../db/db.ts';
import { canNotifyAfterCommit } from '../../../db/notify-after-commit.ts';
import { preparedStatement } from '../../../db/prepared-statements.ts';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import type { Envelope } from '../../envelope.ts';
import { envelopeRecordset } from '../../envelope-recordset.ts';
import { envelopeFromRow, type EnvelopeRow } from '../../envelope-row.ts';
import { PublishError, type Publisher } from '../../publisher.ts';
import { assertQueueName } from './pg-queue.ts';
import {
  forgetProjection,
  listProjections,
  type ForgottenProjection,
  type StreamProjections,
} from './pg-stream-projection-admin.ts';
import { pgStreamChannel } from './pg-stream-schema.ts';
import { resolveTrimOptions, trimStream, type TrimOptions, type TrimOutcome } from './pg-stream-trim.ts';

/** One entry of a stream: the envelope appended, at its position. */
export interface StreamEntry {
  readonly stream: string;
  /** 1 for a stream's first entry; each next entry is one more, with no gaps (a trim removes a prefix). */
  readonly position: number;
  readonly envelope: Envelope;
  /** When the append committed, by the database's clock. */
  readonly appendedAt: Date;
}

export interface ReadOptions {
  /**
   * Entries after this position. Default 0: from position 1, so on a trimmed stream this too is
   * a cursor the trim passed (see `onTrimmed`).
   */
  after?: number;
  /** At most this many entries. Default 100, at most 10 000. */
  limit?: number;
  /**
   * What to do when entries right after `after` were trimmed, so the next entry is not there:
   * `'throw'` rejects with `StreamTrimmedError` (a reader never skips without knowing); `'resume'`
   * reads from the first retained entry, passing over the trimmed ones (Kafka's
   * `auto.offset.reset=earliest`): a page may then start past `after + 1`. Default `'throw'`.
   */
  onTrimmed?: 'throw' | 'resume';
}

/** Where a stream starts and ends: it holds positions `first` to `last`, none when `first > last`. */
export interface StreamBounds {
  /** The first retained position: 1 until a trim, `last + 1` when every entry was trimmed. */
  first: number;
  /** The last committed position (the head); 0 before the first append. */
  last: number;
}

/**
 * A read asked for entries after a position that a trim has deleted past: entries
 * `after + 1` to `first - 1` are gone. Read from `after: first - 1` (or with `onTrimmed:
 * 'resume'`) to go on, knowing those entries were never seen; a read model that needs them all
 * must be rebuilt from a source that still has them.
 */
export class StreamTrimmedError extends KeelError {
  readonly stream: string;
  readonly after: number;
  /** The stream's first retained position when the read ran. */
  readonly first: number;
  constructor(stream: string, after: number, first: number) {
    super(
      'KEEL_STREAM_TRIMMED',
      `stream ${stream}: entries ${after + 1} to ${first - 1} were trimmed; it now starts at ${first}`,
      { details: { stream, after, first } },
    );
    this.stream = stream;
    this.after = after;
    this.first = first;
  }
}

/** The positions an append took: `first` to `last`, both included. */
export interface AppendResult {
  first: number;
  last: number;
}

const maxReadLimit = 10_000;

/**
 * Appends the envelopes ($3, a recordset) to stream $1 after bumping its head by $2, in one
 * statement. The head row's lock, taken by the upsert and held to the commit, is the ordering.
 */
const appendEntries = preparedStatement(
  `WITH head AS (
     INSERT INTO keel_stream_heads AS h (stream, position) VALUES ($1, $2::bigint)
     ON CONFLICT (stream) DO UPDATE SET position = h.position + $2::bigint
     RETURNING h.position - $2::bigint AS base)
   INSERT INTO keel_stream (stream, position, id, type, key, payload, headers, occurred_at, hlc)
   SELECT $1, head.base + e.ord, (e.doc->>'id')::uuid, e.doc->>'type', e.doc->>'key', e.doc->'payload',
          e.doc->'headers', (e.doc->>'occurred_at')::timestamptz, e.doc->>'hlc'
   FROM head, jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e(doc, ord)
   RETURNING position::text`,
);

// Positions are gap-free from the first retained one, so the next `limit` entries after p are
// exactly p+1 .. p+limit: the bounded range keeps a page's cost to its own rows whatever plan is
// chosen (a table without statistics yet got a bitmap scan of every later row, then a sort).
// The stream's first position comes from the head row in the same statement, so from one
// snapshot: a trim that commits between two statements could otherwise pass its check and then
// hand back a page with a hole at its start. The range starts at the first retained entry when
// p is below it ('resume'; 'throw' rejects before using the rows). Ordered by the lateral's
// column: `ORDER BY position` would sort by the text output column.
const readEntries = `SELECT h.first_position::text AS first, s.position::text AS position,
    s.id, s.type, s.key, s.payload, s.headers, s.occurred_at::text AS occurred_at, s.hlc, s.appended_at
  FROM keel_stream_heads AS h
  LEFT JOIN LATERAL (
    SELECT e.* FROM keel_stream AS e
    WHERE e.stream = h.stream AND e.position > greatest($2::bigint, h.first_position - 1)
      AND e.position <= greatest($2::bigint, h.first_position - 1) + $3::bigint
    ORDER BY e.position LIMIT $3) AS s ON true
  WHERE h.stream = $1
  ORDER BY s.position`;

export function assertStreamName(name: string, field = 'stream'): void {
  assertQueueName(name, field);
}

/** Checks a position argument: an integer >= 0 that a JavaScript number holds exactly. */
export function assertPosition(value: unknown, field: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new InvalidArgumentError(field, 'an integer >= 0', value);
}

/**
 * An append-only log in a PostgreSQL table (PGlite embedded, or a server): replayable from its
 * first position, unlike `PgQueue`, which deletes what it delivers. Each named stream numbers its
 * entries 1, 2, 3, ... with no gaps, in commit order: a reader that has read up to position p
 * never later finds a committed entry below p, so "after p" is a complete cursor.
 *
 * Why not a bigserial: sequence values are taken when a row is inserted, not when it commits, so
 * a transaction holding position 7 can commit after one holding 8; a reader that saw 8 and moved
 * its cursor past it would never see 7. Here every append to a stream first upserts the stream's
 * row in `keel_stream_heads` (position += n) and numbers its entries from the old value: the row
 * lock serialises appenders of one stream until each commits (PostgreSQL makes a commit visible
 * before it releases the locks), so a later position is always a later commit; a rolled-back
 * append rolls the head back with it, so no number is skipped. Appends to different streams do
 * not wait for each other. The cost: one stream takes one append transaction at a time, so keep
 * those transactions short.
 *
 * Retention: `trim` deletes a prefix (positions below a bound) and moves the stream's first
 * position past it; positions stay gap-free from there, and readers whose cursor is below it get
 * `StreamTrimmedError` unless they ask to resume from the first retained entry.
 * `PgStreamRetention` trims on an interval.
 *
 * Duplicates: the stream stores what it is given. A publisher that retries (the outbox relay is
 * at-least-once) can append the same envelope twice; readers deduplicate on `Envelope.id`, or
 * apply idempotently.
 *
 * Run `pgStreamMigrations` with the application's migrations before use.
 */
export class PgStream implements Publisher {
  readonly #db: Db;
  #closed = false;

  constructor(db: Db) {
    this.#db = db;
  }

  /**
   * `Publisher`: appends the messages to stream `destination` in one transaction of their own;
   * resolves when it committed, else rejects with `PublishError`.
   */
  async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
    assertStreamName(destination, 'destination');
    try {
      await this.append(destination, messages);
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw error;
      throw new PublishError(
        destination,
        messages.map((m) => m.id),
        error,
      );
    }
  }

  /** Appends in a transaction of its own; resolves with the positions taken, once committed. */
  async append(stream: string, messages: readonly Envelope[]): Promise<AppendResult | undefined> {
    this.#assertOpen();
    assertStreamName(stream);
    if (messages.length === 0) return undefined;
    const result = await this.#db.transaction((tx) => this.#insert(tx, stream, messages));
    // The wake-up on its own, after the commit: readers woken before it would find nothing.
    await this.#db.query('SELECT pg_notify($1, $2)', [pgStreamChannel, stream]).catch(() => undefined);
    return result;
  }

  /**
   * Appends inside the caller's transaction (same database): the entries exist, and readers are
   * woken, only if it commits. Until it ends, other appends to `stream` wait for it. In a
   * `repeatable read` or `serializable` transaction an append that raced another fails with
   * SQLSTATE 40001 (retry the transaction); it never takes a wrong position.
   */
  async appendIn(
    tx: Queryable,
    stream: string,
    messages: readonly Envelope[],
  ): Promise<AppendResult | undefined> {
    this.#assertOpen();
    assertStreamName(stream);
    if (messages.length === 0) return undefined;
    const result = await this.#insert(tx, stream, messages);
    if (canNotifyAfterCommit(tx)) tx.notifyAfterCommit(pgStreamChannel, stream);
    else await tx.query('SELECT pg_notify($1, $2)', [pgStreamChannel, stream]);
    return result;
  }

  /**
   * Entries of `stream` after `options.after`, in position order; fewer than `limit` only at the
   * end. `via`: a transaction to read in (a projection reads in the one that applies the entries).
   * After a trim past `after`, rejects with `StreamTrimmedError`, or with `onTrimmed: 'resume'`
   * reads from the first retained entry. Never a page with a hole, never an entry a trim deleted.
   */
  async read(stream: string, options: ReadOptions = {}, via: Queryable = this.#db): Promise<StreamEntry[]> {
    this.#assertOpen();
    assertStreamName(stream);
    const after = options.after ?? 0;
    assertPosition(after, 'after');
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > maxReadLimit)
      throw new InvalidArgumentError('limit', `an integer from 1 to ${maxReadLimit}`, limit);
    const onTrimmed = options.onTrimmed ?? 'throw';
    if (onTrimmed !== 'throw' && onTrimmed !== 'resume')
      throw new InvalidArgumentError('onTrimmed', "'throw' or 'resume'", onTrimmed);
    const { rows } = await via.query<
      Partial<EnvelopeRow> & { first: string; position: string | null; appended_at: Date | string | null }
    >(readEntries, [stream, after, limit]);
    const first = Number(rows[0]?.first ?? 1);
    if (after < first - 1 && onTrimmed === 'throw') throw new StreamTrimmedError(stream, after, first);
    const entries: StreamEntry[] = [];
    for (const row of rows) {
      // The head row alone (LEFT JOIN): no entry in the range.
      if (row.position === null) continue;
      entries.push({
        stream,
        position: Number(row.position),
        envelope: envelopeFromRow(row as EnvelopeRow),
        appendedAt: row.appended_at instanceof Date ? row.appended_at : new Date(row.appended_at!),
      });
    }
    return entries;
  }

  /** The positions `stream` holds, read with `via`: its first retained one and its last. */
  async bounds(stream: string, via: Queryable = this.#db): Promise<StreamBounds> {
    this.#assertOpen();
    assertStreamName(stream);
    const { rows } = await via.query<{ first: string; last: string }>(
      'SELECT first_position::text AS first, position::text AS last FROM keel_stream_heads WHERE stream = $1',
      [stream],
    );
    return { first: Number(rows[0]?.first ?? 1), last: Number(rows[0]?.last ?? 0) };
  }

  /**
   * Deletes the oldest entries of `stream`, as far as every bound in `options` allows (see
   * `TrimBounds`), and moves its first position past them; resolves with how many it deleted.
   * Positions are never reused: the next append continues from the head.
   *
   * Batches of `batchSize` entries, each in a transaction of its own that takes the stream's
   * cleaner lock (`pg_try_advisory_xact_lock`): while another trim of this stream holds it, this
   * one returns at once with what it deleted so far, so two cleaners never trim the same entries.
   * Only entries committed when the trim began are deleted: an append that commits meanwhile is
   * kept, whatever the bounds say. Each batch ends by updating the stream's head row, so appends
   * to the stream wait for that batch's commit, and the batch waits for an open `appendIn`
   * transaction to end.
   */
  async trim(stream: string, options: TrimOptions): Promise<number> {
    return (await this.trimWithOutcome(stream, options)).deleted;
  }

  /**
   * `trim`, resolving with what held it back as well as how many entries it deleted: `heldBy` is
   * set when `keepUnappliedBy` was the bound that stopped it short of what the other bounds
   * allowed, and names the projections at the lowest stored position (several can share it) and
   * that position; every entry after it stays. Those are the ones to look at (or, retired, to
   * `forgetProjection`) when a stream does not shrink. `PgStreamRetention` reports the same as
   * its `held` event; `keel stream trim` prints it.
   */
  async trimWithOutcome(stream: string, options: TrimOptions): Promise<TrimOutcome> {
    this.#assertOpen();
    assertStreamName(stream);
    return trimStream(this.#db, stream, resolveTrimOptions(options));
  }

  /**
   * The projections with a stored position on `stream` (`keel_stream_positions`), by name, with
   * the stream's bounds: each one's position, lag to the head, when its position was last stored,
   * whether a trim passed it, and whether it is what holds back a trim with `keepUnappliedBy:
   * 'any-projection'` (Kafka's `kafka-consumer-groups --describe`). One statement, one snapshot,
   * read with `via`. Rejects with `NotFoundError` (`KEEL_NOT_FOUND`) when the stream has neither a
   * committed entry nor a stored projection position: a misspelt name.
   */
  async projections(stream: string, via: Queryable = this.#db): Promise<StreamProjections> {
    this.#assertOpen();
    assertStreamName(stream);
    return listProjections(via, stream);
  }

  /**
   * Deletes `projection`'s stored position on `stream`, so that a trim with `keepUnappliedBy:
   * 'any-projection'` stops keeping entries for it: for a projection that is retired (its code
   * removed), which would otherwise hold the stream back for good. Kafka's `kafka-consumer-groups
   * --delete-offsets`. Resolves with the row it deleted; rejects with `ProjectionNotFoundError`
   * (`KEEL_NOT_FOUND`) when there is none. `via`: a transaction to delete in, e.g. the one that
   * drops the retired read model's table.
   *
   * Against a runner of the projection still running (forget a projection after its code is gone,
   * not before): a batch in flight holds the row's lock, so the delete waits for it to commit and
   * removes the position it stored. A running `ProjectionRunner` never stores the row again: each
   * later batch fails with `ProjectionNotFoundError` (an `error` event, retried every
   * `retryDelayMs`) until it is stopped, or its `rebuild()` starts the projection over from the
   * stream's first retained entry; storing it again from where the runner was would silently undo
   * the forget. A runner created afterwards (a process started with the code still deployed) is
   * a new projection: it stores its row at 0 and replays the stream into whatever its model holds.
   */
  async forgetProjection(
    stream: string,
    projection: string,
    via: Queryable = this.#db,
  ): Promise<ForgottenProjection> {
    this.#assertOpen();
    assertStreamName(stream);
    assertQueueName(projection, 'projection');
    return forgetProjection(via, stream, projection);
  }

  /** The position of the last committed entry of `stream` (0 when it has none), read with `via`. */
  async head(stream: string, via: Queryable = this.#db): Promise<number> {
    this.#assertOpen();
    assertStreamName(stream);
    const { rows } = await via.query<{ position: string }>(
      'SELECT position::text FROM keel_stream_heads WHERE stream = $1',
      [stream],
    );
    return Number(rows[0]?.position ?? 0);
  }

  /** The database belongs to the caller: this only makes later calls reject. */
  async close(): Promise<void> {
    this.#closed = true;
  }

  #assertOpen(): void {
    if (this.#closed) throw new KeelError('KEEL_SERVICE_STATE', 'PgStream is closed');
  }

  async #insert(tx: Queryable, stream: string, messages: readonly Envelope[]): Promise<AppendResult> {
    const { rows } = await tx.query<{ position: string }>(appendEntries, [
      stream,
      messages.length,
      envelopeRecordset(messages),
    ]);
    const positions = rows.map((row) => Number(row.position));
    return { first: Math.min(...positions), last: Math.max(...positions) };
  }
}
