import type { Db, Unlisten } from '../../../db/db.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { Delivery, DeliverySource } from '../../delivery-source.ts';
import { describeError } from '../../describe-error.ts';
import { envelopeFromRow, type EnvelopeRow } from '../../envelope-row.ts';
import { pgQueueChannel } from './schema.ts';

/** Re-exported for the outbox relay, which still imports it from here. */

/** Longest time between two looks for expired leases while claiming. */
const reapEveryMs = 1000;

export interface PgQueueSourceOptions {
  clock: Clock;
  /** Unique per consumer instance: leases are held in its name. */
  owner: string;
  /** How long a claim is held before another consumer may take the message. Default 30 000 ms. */
  leaseMs?: number;
  /** Where messages go after their last attempt. Default `<queue>.dead-letter`. */
  deadLetterQueue?: string;
}

export interface PgDelivery extends Delivery {
  readonly seq: string;
  /**
   * The lease token its claim wrote into `lease_owner`: the owner and a claim number. Every
   * settle and renewal matches it, so a consumer whose lease was taken (or reaped and claimed
   * again, even by itself) can change nothing of the new holder's delivery.
   */
  readonly token: string;
}

interface QueueRow extends EnvelopeRow {
  seq: string;
  attempts: number;
}

/**
 * Leases up to $3 due messages of queue $1 to owner $4 until $5, the oldest of each key only.
 * Not a prepared statement: a generic plan made while the queue is empty (a sequential scan)
 * would stay cached as a burst fills it, until the next ANALYZE.
 */
const claimBatch = `WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
   -- A lease need not survive a server crash: lost, its message is merely claimable again at
   -- once (at-least-once holds; that attempt goes uncounted). Not waiting for the WAL flush
   -- saves a disk sync per claim; the ack that follows is a durable commit and flushes the
   -- WAL up to itself, this claim included. Local: it ends with this statement.
   UPDATE keel_queue AS q
   SET lease_owner = $4, lease_until = $5, attempts = q.attempts + 1
   FROM relaxed
   WHERE q.ctid = ANY(ARRAY(
     SELECT ctid FROM keel_queue AS r
     WHERE queue = $1 AND lease_owner IS NULL AND available_at <= $2
       -- Only the oldest message of a key: the next waits until it is acked or dead-lettered,
       -- even while it waits for a retry. Other keys go on in parallel.
       AND (r.key IS NULL OR NOT EXISTS (
         SELECT 1 FROM keel_queue AS e WHERE e.queue = r.queue AND e.key = r.key AND e.seq < r.seq))
     ORDER BY seq
     LIMIT $3
     FOR UPDATE SKIP LOCKED))
   RETURNING q.seq::text AS seq, q.id::text AS id, q.type, q.key, q.payload, q.headers,
     q.occurred_at::text AS occurred_at, q.hlc, q.attempts`;

/** Deletes the acked rows still leased to their deliveries' tokens (not prepared, as the claim). */
const deleteAcked = `DELETE FROM keel_queue AS q
   USING unnest($1::bigint[], $2::text[]) AS a(seq, token)
   WHERE q.seq = a.seq AND q.lease_owner = a.token
   RETURNING q.seq::text AS seq`;

/**
 * The PostgreSQL queue's side of the consumer runtime: claim, ack, retry, dead-letter, release,
 * and lease renewal. Each claim holds its rows under a token of its own (fencing): a settle or a
 * renewal by a consumer whose lease was lost matches no row.
 */
export class PgQueueSource implements DeliverySource<PgDelivery> {
  readonly destination: string;
  readonly leaseMs: number;
  /**
   * Each claim is a round trip and each ack a commit: claiming ahead lets one of each serve many
   * messages (with `concurrency` 1 and no prefetch, the defaults drained ~600 jobs/s; with 16,
   * ~3.5k under three times the load).
   */
  readonly defaultPrefetch = 16;
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #owner: string;
  #claims = 0;
  readonly #deadLetterQueue: string;
  #unlisten: Unlisten | undefined;
  #reapedAt = -Infinity;

  constructor(db: Db, queue: string, options: PgQueueSourceOptions) {
    this.destination = queue;
    this.#db = db;
    this.#clock = options.clock;
    this.#owner = options.owner;
    this.leaseMs = options.leaseMs ?? 30_000;
    if (!Number.isFinite(this.leaseMs) || this.leaseMs <= 0) {
      throw new InvalidArgumentError('leaseMs', 'a number > 0', options.leaseMs);
    }
    this.#deadLetterQueue = options.deadLetterQueue ?? `${queue}.dead-letter`;
  }

  async open(wake: () => void): Promise<void> {
    this.#unlisten = await this.#db.listen(pgQueueChannel, (payload) => {
      if (payload === this.destination) wake();
    });
  }

  async claim(max: number): Promise<PgDelivery[]> {
    const now = this.#clock.now();
    // Expired leases first: their holders crashed or stalled, so the messages go back to ready.
    // At most every `reapEveryMs`: under load claims come back to back, and each one paying for
    // this round trip bought nothing but a lease freed a few milliseconds sooner.
    if (now - this.#reapedAt >= Math.min(reapEveryMs, this.leaseMs / 4)) {
      await this.#db.query(
        `UPDATE keel_queue SET lease_owner = NULL, lease_until = NULL
         WHERE queue = $1 AND lease_owner IS NOT NULL AND lease_until <= $2`,
        [this.destination, new Date(now)],
      );
      this.#reapedAt = now;
    }
    const token = `${this.#owner}:${++this.#claims}`;
    // The picked rows are locked (FOR UPDATE) until this statement ends, so their ctids stay
    // theirs: updating by ctid saves a primary-key lookup per row.
    const { rows } = await this.#db.query<QueueRow>(claimBatch, [
      this.destination,
      new Date(now),
      max,
      token,
      new Date(now + this.leaseMs),
    ]);
    // Seqs are positive bigints as text: shorter is smaller, then compare as text.
    rows.sort((a, b) => a.seq.length - b.seq.length || (a.seq < b.seq ? -1 : 1));
    return rows.map((row) => ({
      seq: row.seq,
      token,
      attempt: row.attempts,
      envelope: envelopeFromRow(row),
    }));
  }

  /** Deletes the rows this consumer still holds; resolves with the deliveries whose lease was lost. */
  async ack(deliveries: readonly PgDelivery[]): Promise<PgDelivery[]> {
    if (deliveries.length === 0) return [];
    const { rows } = await this.#db.query<{ seq: string }>(deleteAcked, [
      deliveries.map((d) => d.seq),
      deliveries.map((d) => d.token),
    ]);
    return notIn(deliveries, rows);
  }

  /**
   * Moves the lease of every delivery still held to `leaseMs` from now, in one statement;
   * resolves with those no longer held (acked, reaped or claimed by another consumer).
   */
  async extend(deliveries: readonly PgDelivery[]): Promise<PgDelivery[]> {
    if (deliveries.length === 0) return [];
    const { rows } = await this.#db.query<{ seq: string }>(
      `WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
       -- As for a claim: a renewal lost in a server crash merely lets the message go sooner.
       UPDATE keel_queue AS q SET lease_until = $3
       FROM unnest($1::bigint[], $2::text[]) AS h(seq, token), relaxed
       WHERE q.seq = h.seq AND q.lease_owner = h.token
       RETURNING q.seq::text AS seq`,
      [
        deliveries.map((d) => d.seq),
        deliveries.map((d) => d.token),
        new Date(this.#clock.now() + this.leaseMs),
      ],
    );
    return notIn(deliveries, rows);
  }

  async retry(delivery: PgDelivery, delayMs: number, error: unknown): Promise<boolean> {
    const now = this.#clock.now();
    const { rowCount } = await this.#db.query(
      `UPDATE keel_queue
       SET lease_owner = NULL, lease_until = NULL, available_at = $3, last_error = $4,
           first_failed_at = coalesce(first_failed_at, $5), last_failed_at = $5
       WHERE seq = $1 AND lease_owner = $2`,
      [delivery.seq, delivery.token, new Date(now + delayMs), describeError(error), new Date(now)],
    );
    return rowCount > 0;
  }

  async deadLetter(delivery: PgDelivery, error: unknown): Promise<boolean> {
    const now = new Date(this.#clock.now());
    const { rowCount } = await this.#db.query(
      `WITH dead AS (
         DELETE FROM keel_queue WHERE seq = $1 AND lease_owner = $2 RETURNING *)
       INSERT INTO keel_queue (queue, id, type, key, payload, headers, occurred_at, hlc, available_at,
                               first_failed_at, last_failed_at, last_error)
       SELECT $3, id, type, key, payload,
              headers || jsonb_build_object(
                'x-dead-letter-source', queue,
                'x-dead-letter-error', $4::text,
                'x-dead-letter-attempts', attempts::text,
                'x-dead-letter-first-failed-at', to_char(coalesce(first_failed_at, $5) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'x-dead-letter-last-failed-at', to_char($5::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
              occurred_at, hlc, $5, coalesce(first_failed_at, $5), $5, $4
       FROM dead`,
      [delivery.seq, delivery.token, this.#deadLetterQueue, describeError(error), now],
    );
    return rowCount > 0;
  }

  async release(delivery: PgDelivery): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      `UPDATE keel_queue SET lease_owner = NULL, lease_until = NULL, attempts = greatest(attempts - 1, 0)
       WHERE seq = $1 AND lease_owner = $2`,
      [delivery.seq, delivery.token],
    );
    return rowCount > 0;
  }

  async close(): Promise<void> {
    const unlisten = this.#unlisten;
    this.#unlisten = undefined;
    await unlisten?.();
  }
}

/** The deliveries whose seq the statement did not return. */
function notIn(deliveries: readonly PgDelivery[], rows: readonly { seq: string }[]): PgDelivery[] {
  if (rows.length === deliveries.length) return [];
  const done = new Set(rows.map((row) => row.seq));
  return deliveries.filter((d) => !done.has(d.seq));
}
