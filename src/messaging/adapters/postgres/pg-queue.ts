import { v7 as uuidv7 } from 'uuid';
import type { Db, Queryable } from '../../../db/db.ts';
import { preparedStatement } from '../../../db/prepared-statements.ts';
import { canNotifyAfterCommit } from '../../../db/notify-after-commit.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import type { Envelope } from '../../envelope.ts';
import { envelopeRecordset } from '../../envelope-recordset.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { PgQueueSource, type PgQueueSourceOptions } from './pg-queue-source.ts';
import { pgQueueChannel } from './schema.ts';

export interface PgQueueOptions {
  clock?: Clock;
}

const queueName = /^[A-Za-z0-9_.:-]{1,200}$/;

/** Inserts a batch of messages into queue $1, notifying on $4 when $5. */
const insertMessages = preparedStatement(
  `WITH inserted AS (
     INSERT INTO keel_queue (queue, id, type, key, payload, headers, occurred_at, hlc, available_at)
     SELECT $1, m.id, m.type, m.key, m.payload, m.headers, m.occurred_at, m.hlc, $2
     FROM jsonb_to_recordset($3::jsonb)
       AS m(id uuid, type text, key text, payload jsonb, headers jsonb, occurred_at timestamptz, hlc text)
     RETURNING 1)
   SELECT CASE WHEN $5::boolean THEN pg_notify($4, $1) END FROM (SELECT count(*) FROM inserted) AS c`,
);

export function assertQueueName(name: string, field = 'destination'): void {
  if (!queueName.test(name))
    throw new InvalidArgumentError(field, 'a queue name of [A-Za-z0-9_.:-], 1-200 chars', name);
}

/**
 * A work queue in a PostgreSQL table (PGlite embedded, or a server). Publishing is an INSERT;
 * consumers claim with `FOR UPDATE SKIP LOCKED` under a lease, wake on NOTIFY and poll as a
 * fallback, and delete a row when its handler's effects have committed.
 *
 * Run `pgQueueMigrations` with the application's migrations before use.
 */
export class PgQueue implements MessageBroker {
  readonly name = 'postgres';
  readonly capabilities: BrokerCapabilities = {
    ordering: 'per-key',
    replayable: false,
    consumerGroups: false,
    redeliversOnNack: true,
    delayedDelivery: true,
  };
  readonly #db: Db;
  readonly #clock: Clock;

  constructor(db: Db, options: PgQueueOptions = {}) {
    this.#db = db;
    this.#clock = options.clock ?? systemClock;
  }

  /** Inserts the messages in one statement; resolves when committed. */
  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    try {
      await this.#insert(this.#db, destination, messages, options, false);
      // The wake-up on its own, after the insert committed: see NotifiesAfterCommit for why.
      if (messages.length > 0)
        await this.#db
          .query('SELECT pg_notify($1, $2)', [pgQueueChannel, destination])
          .catch(() => undefined);
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw error;
      throw new PublishError(
        destination,
        messages.map((m) => m.id),
        error,
      );
    }
  }

  /**
   * Inserts the messages inside the caller's transaction: they become visible, and consumers are
   * woken, only when it commits. Same database only.
   */
  async publishIn(
    tx: Queryable,
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    const notifyLater = canNotifyAfterCommit(tx);
    await this.#insert(tx, destination, messages, options, !notifyLater);
    if (notifyLater && messages.length > 0) tx.notifyAfterCommit(pgQueueChannel, destination);
  }

  async #insert(
    tx: Queryable,
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions,
    notify: boolean,
  ): Promise<void> {
    assertQueueName(destination);
    if (messages.length === 0) return;
    const availableAt = new Date(options.availableAt ?? this.#clock.now());
    await tx.query(insertMessages, [
      destination,
      availableAt,
      envelopeRecordset(messages),
      pgQueueChannel,
      notify,
    ]);
  }

  /** A source for one consumer instance of `queue`, holding leases in a name of its own. */
  source(queue: string, options: SourceOptions & { clock?: Clock } = {}): PgQueueSource {
    assertQueueName(queue, 'queue');
    if (options.group !== undefined) {
      throw new InvalidArgumentError(
        'group',
        'undefined: the PostgreSQL queue has no consumer groups',
        options.group,
      );
    }
    const sourceOptions: PgQueueSourceOptions = { clock: options.clock ?? this.#clock, owner: uuidv7() };
    if (options.leaseMs !== undefined) sourceOptions.leaseMs = options.leaseMs;
    if (options.deadLetterDestination !== undefined)
      sourceOptions.deadLetterQueue = options.deadLetterDestination;
    return new PgQueueSource(this.#db, queue, sourceOptions);
  }

  /** A consumer of `queue`; start it to begin handling. */
  consumer(
    queue: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    const clock = options.clock ?? this.#clock;
    return new QueueConsumer(this.source(queue, { ...options, clock }), handler, { ...options, clock });
  }

  async redrive(deadLetterQueue: string, options: { to?: string; limit?: number } = {}): Promise<number> {
    assertQueueName(deadLetterQueue, 'deadLetterDestination');
    if (options.to !== undefined) assertQueueName(options.to, 'to');
    const limit = options.limit ?? 2 ** 31 - 1;
    if (!Number.isInteger(limit) || limit < 1)
      throw new InvalidArgumentError('limit', 'an integer >= 1', limit);
    const { rows } = await this.#db.query<{ queue: string }>(
      `WITH picked AS (
         SELECT seq FROM keel_queue WHERE queue = $1 AND lease_owner IS NULL ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
       UPDATE keel_queue AS q
       SET queue = coalesce($2, q.headers->>'x-dead-letter-source'), attempts = 0, available_at = $4,
           first_failed_at = NULL, last_failed_at = NULL, last_error = NULL,
           headers = (q.headers - ARRAY['x-dead-letter-source', 'x-dead-letter-error', 'x-dead-letter-attempts',
                                        'x-dead-letter-first-failed-at', 'x-dead-letter-last-failed-at'])
                     || jsonb_build_object('x-redrive-count',
                          (coalesce((q.headers->>'x-redrive-count')::int, 0) + 1)::text)
       FROM picked WHERE q.seq = picked.seq AND coalesce($2, q.headers->>'x-dead-letter-source') IS NOT NULL
       RETURNING q.queue`,
      [deadLetterQueue, options.to ?? null, limit, new Date(this.#clock.now())],
    );
    for (const queue of new Set(rows.map((row) => row.queue))) {
      await this.#db.query('SELECT pg_notify($1, $2)', [pgQueueChannel, queue]);
    }
    return rows.length;
  }

  /** The database belongs to the caller; nothing to close here. */
  async close(): Promise<void> {}

  /** Messages waiting in `queue` (ready, delayed and leased). */
  /**
   * How far consumers are behind on `queue`, in seconds: the age of its oldest message that is
   * due (delayed ones count from their due time), by the database's clock; 0 when none is due.
   */
  async lag(queue: string): Promise<number> {
    const { rows } = await this.#db.query<{ s: string | null }>(
      `SELECT extract(epoch FROM (now() - min(available_at)))::text AS s
       FROM keel_queue WHERE queue = $1 AND available_at <= now()`,
      [queue],
    );
    return Math.max(0, Number(rows[0]?.s ?? 0));
  }

  async depth(queue: string): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>(
      'SELECT count(*)::text AS n FROM keel_queue WHERE queue = $1',
      [queue],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
