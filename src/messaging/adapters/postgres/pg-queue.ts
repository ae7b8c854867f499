import { v7 as uuidv7 } from 'uuid';
import type { Db, Queryable } from '../../../db/db.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import type { Publisher } from '../../publisher.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { PgQueueSource, type PgQueueSourceOptions } from './pg-queue-source.ts';
import { pgQueueChannel } from './schema.ts';

export interface PgQueueOptions {
  clock?: Clock;
}

export interface PublishOptions {
  /** Deliver no earlier than this instant (ms since epoch). */
  availableAt?: number;
}

const queueName = /^[A-Za-z0-9_.:-]{1,200}$/;

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
export class PgQueue implements Publisher {
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
      await this.publishIn(this.#db, destination, messages, options);
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
    assertQueueName(destination);
    if (messages.length === 0) return;
    const availableAt = new Date(options.availableAt ?? this.#clock.now());
    const rows = messages.map((m) => ({
      id: m.id,
      type: m.type,
      key: m.key,
      payload: m.payload,
      headers: m.headers,
      occurred_at: m.occurredAt,
      hlc: m.hlc ?? null,
    }));
    await tx.query(
      `WITH inserted AS (
         INSERT INTO keel_queue (queue, id, type, key, payload, headers, occurred_at, hlc, available_at)
         SELECT $1, m.id, m.type, m.key, m.payload, m.headers, m.occurred_at, m.hlc, $2
         FROM jsonb_to_recordset($3::jsonb)
           AS m(id uuid, type text, key text, payload jsonb, headers jsonb, occurred_at timestamptz, hlc text)
         RETURNING 1)
       SELECT pg_notify($4, $1) FROM (SELECT count(*) FROM inserted) AS c`,
      [destination, availableAt, JSON.stringify(rows), pgQueueChannel],
    );
  }

  /** A consumer of `queue`; start it to begin handling. */
  consumer(
    queue: string,
    handler: Handler,
    options: QueueConsumerOptions & Omit<PgQueueSourceOptions, 'clock' | 'owner'> = {},
  ): QueueConsumer {
    assertQueueName(queue, 'queue');
    const clock = options.clock ?? this.#clock;
    const source = new PgQueueSource(this.#db, queue, {
      clock,
      owner: uuidv7(),
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
      ...(options.deadLetterQueue === undefined ? {} : { deadLetterQueue: options.deadLetterQueue }),
    });
    return new QueueConsumer(source, handler, { ...options, clock });
  }

  /** Messages waiting in `queue` (ready, delayed and leased). */
  async depth(queue: string): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>(
      'SELECT count(*)::text AS n FROM keel_queue WHERE queue = $1',
      [queue],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
