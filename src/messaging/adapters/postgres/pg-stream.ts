import type { Db, Queryable } from '../../../db/db.ts';
import { canNotifyAfterCommit } from '../../../db/notify-after-commit.ts';
import { preparedStatement } from '../../../db/prepared-statements.ts';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import type { Envelope } from '../../envelope.ts';
import { envelopeRecordset } from '../../envelope-recordset.ts';
import { envelopeFromRow, type EnvelopeRow } from '../../envelope-row.ts';
import { PublishError, type Publisher } from '../../publisher.ts';
import { assertQueueName } from './pg-queue.ts';
import { pgStreamChannel } from './pg-stream-schema.ts';

/** One entry of a stream: the envelope appended, at its position. */
export interface StreamEntry {
  readonly stream: string;
  /** 1 for a stream's first entry; each next entry is one more, with no gaps. */
  readonly position: number;
  readonly envelope: Envelope;
  /** When the append committed, by the database's clock. */
  readonly appendedAt: Date;
}

export interface ReadOptions {
  /** Entries after this position. Default 0: from the first. */
  after?: number;
  /** At most this many entries. Default 100, at most 10 000. */
  limit?: number;
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

// Positions are gap-free, so the next `limit` entries after p are exactly p+1 .. p+limit: the
// bounded range keeps a page's cost to its own rows whatever plan is chosen (a table without
// statistics yet got a bitmap scan of every later row, then a sort). It relies on entries never
// being deleted: a retention that drops a prefix must also start readers past it. Ordered by
// the table's column: `ORDER BY position` would sort by the text output column.
const readEntries = `SELECT s.position::text AS position, id, type, key, payload, headers, occurred_at, hlc, appended_at
  FROM keel_stream AS s
  WHERE s.stream = $1 AND s.position > $2::bigint AND s.position <= $2::bigint + $3::bigint
  ORDER BY s.position LIMIT $3`;

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
   */
  async read(stream: string, options: ReadOptions = {}, via: Queryable = this.#db): Promise<StreamEntry[]> {
    this.#assertOpen();
    assertStreamName(stream);
    const after = options.after ?? 0;
    assertPosition(after, 'after');
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > maxReadLimit)
      throw new InvalidArgumentError('limit', `an integer from 1 to ${maxReadLimit}`, limit);
    const { rows } = await via.query<EnvelopeRow & { position: string; appended_at: Date | string }>(
      readEntries,
      [stream, after, limit],
    );
    return rows.map((row) => ({
      stream,
      position: Number(row.position),
      envelope: envelopeFromRow(row),
      appendedAt: row.appended_at instanceof Date ? row.appended_at : new Date(row.appended_at),
    }));
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
