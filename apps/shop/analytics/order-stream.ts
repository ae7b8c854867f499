import type { Db, Tx } from '../../../src/db/index.ts';
import { PgStream, PgStreamRetention, type Publisher } from '../../../src/messaging/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import type { LifecycleEvents, ListenerHandle, ReportsHealth, Service } from '../../../src/service/index.ts';
import { orderEventsStream } from '../contracts/order-events.ts';
import {
  orderAnalyticsProjectionName,
  orderAnalyticsRunner,
  type OrderAnalyticsRunnerOptions,
} from './order-analytics-projection.ts';

/** How far the analytics model has applied the order stream, in the stream's own units. */
export interface OrderStreamProgress {
  /** Entries applied (PostgreSQL), or the next offsets to apply summed over partitions (Kafka). */
  position: number;
  /** The stream's last position, or its partitions' end offsets summed. */
  head: number;
}

/** The analytics projection's runner, whichever log the order stream lives in. */
export interface OrderAnalyticsRunner extends Service, ReportsHealth {
  readonly projection: string;
  /** The events both runners have: a batch committed, a failure survived (and retried). */
  readonly events: {
    on(name: 'error', listener: (payload: LifecycleEvents['error']) => void): ListenerHandle;
    once(name: 'applied'): Promise<unknown>;
  };
  /** Empties the model and replays the stream from its first entry (a started runner by itself). */
  rebuild(): Promise<void>;
  /** Applies what the stream holds now; how many entries. For the command line: no `start()` needed. */
  catchUp(): Promise<number>;
}

/**
 * Where the order stream lives, and so what appends to it, what replays it into the analytics
 * model and how far behind that model is. The default is keel's PostgreSQL stream in the shop's
 * database (`pgOrderStream`); with the queues on Kafka it is a topic on the same cluster
 * (`kafkaOrderStream`, loaded only then, as the Kafka client is).
 */
export interface OrderStream {
  /** The stream's name where it lives: `shop.order-events`, or the topic (with the broker's prefix). */
  readonly name: string;
  /** What the relay appends the stream's events through; `broker` is the shop's (prefixed) broker. */
  appender(db: Db, broker: Publisher): Publisher;
  /** The analytics projection over the stream: the worker role runs it, `npm run analytics` too. */
  analyticsRunner(db: Db, options?: OrderAnalyticsRunnerOptions): OrderAnalyticsRunner;
  /**
   * The summary's progress, in two steps: what lies outside the database (a topic's end offsets)
   * is read now, before the summary's transaction (a network round trip must not hold it open);
   * the function returned reads the applied position with that transaction, so the position
   * agrees with the model it reads. The head is read first, so it can be behind: it is at least
   * the position.
   */
  progress(db: Db): Promise<(tx: Tx) => Promise<OrderStreamProgress>>;
  /** Lets go of what the stream holds outside the database (a Kafka connection): the shop calls it on stop. */
  close?(): Promise<void>;
  /**
   * What deletes events older than `olderThanMs` that the analytics model has applied; none
   * where the log keeps its own retention (a Kafka topic's `retention.ms`).
   */
  retention?(
    db: Db,
    options: { olderThanMs: number; clock: Clock },
  ): Service &
    ReportsHealth & {
      readonly events: {
        on(name: 'error', listener: (payload: LifecycleEvents['error']) => void): ListenerHandle;
      };
    };
}

const pgProgress = `SELECT
    (SELECT position FROM keel_stream_positions WHERE projection = $1 AND stream = $2)::text AS position,
    (SELECT position FROM keel_stream_heads WHERE stream = $2)::text AS head`;

/** The order stream in the shop's database: keel's `PgStream`, gap-free positions from 1. */
export const pgOrderStream: OrderStream = {
  name: orderEventsStream,
  appender: (db) => new PgStream(db),
  analyticsRunner: (db, options) => orderAnalyticsRunner(db, options),
  retention: (db, { olderThanMs, clock }) =>
    new PgStreamRetention(db, {
      name: 'order-stream-retention',
      clock,
      // Never what the model has still to apply: a slow or stopped worker loses nothing.
      streams: [{ stream: orderEventsStream, olderThanMs, keepUnappliedBy: [orderAnalyticsProjectionName] }],
    }),
  progress: async () => async (tx) => {
    const { rows } = await tx.query<{ position: string | null; head: string | null }>(pgProgress, [
      orderAnalyticsProjectionName,
      orderEventsStream,
    ]);
    const position = Number(rows[0]?.position ?? 0);
    return { position, head: Math.max(position, Number(rows[0]?.head ?? 0)) };
  },
};

/** The progress read on its own (the command line's `status`). */
export async function orderStreamProgress(db: Db, stream: OrderStream): Promise<OrderStreamProgress> {
  const read = await stream.progress(db);
  return db.transaction(read, { isolation: 'repeatable read' });
}
