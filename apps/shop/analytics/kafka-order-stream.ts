// The order stream as a Kafka topic. Imports the Kafka adapter: load this file only when the shop
// runs on Kafka (presets/order-stream-config.ts imports it on demand).
import type { Db } from '../../../src/db/index.ts';
import {
  KafkaProjectionRunner,
  KafkaTopicRanges,
  type KafkaEntry,
  type PartitionRange,
} from '../../../src/messaging/adapters/kafka/index.ts';
import { systemClock, type Clock } from '../../../src/time/index.ts';
import {
  orderAnalyticsProjection,
  orderAnalyticsProjectionName,
  type OrderAnalyticsRunnerOptions,
  type StreamPlace,
} from './order-analytics-projection.ts';
import type { OrderStream } from './order-stream.ts';

export interface KafkaOrderStreamOptions {
  /** Bootstrap servers of the cluster the shop's broker publishes to. */
  brokers: readonly string[];
  /** The topic: `shop.order-events` under the broker's destination prefix, as the broker names it. */
  topic: string;
  /** Default `shop`. */
  clientId?: string;
  /** What ages the cached partition ends (1 s). Default the system clock. */
  clock?: Clock;
}

/** The order stream on Kafka, with the connection its progress reads share. */
export interface KafkaOrderStream extends OrderStream {
  /**
   * Closes the connection progress reads ask Kafka for the partitions' ends on (idempotent; a
   * read after it opens another). Idle, the connection does not keep the process alive, so a
   * process that never calls this still exits.
   */
  close(): Promise<void>;
}

/** How long reads of the model share one answer for the partitions' ends. */
const endsMaxAgeMs = 1000;

const kafkaPlace = (entry: KafkaEntry): StreamPlace => ({
  partition: entry.partition,
  position: entry.offset,
  text: `partition ${entry.partition} offset ${entry.offset}`,
});

/**
 * The order stream on Kafka: the relay publishes its events through the shop's broker (keyed by
 * order id, so an order's events share a partition, in order), and the analytics model is
 * applied from the topic by a `KafkaProjectionRunner`, in the transaction that stores the
 * partitions' offsets. Progress is in offsets, summed over partitions.
 */
export function kafkaOrderStream(options: KafkaOrderStreamOptions): KafkaOrderStream {
  const clientId = options.clientId ?? 'shop';
  const clock = options.clock ?? systemClock;
  const runner = (
    db: Db,
    { onSkipped, ...settings }: OrderAnalyticsRunnerOptions = {},
  ): KafkaProjectionRunner =>
    new KafkaProjectionRunner(db, orderAnalyticsProjection(kafkaPlace, onSkipped), {
      ...settings,
      name: orderAnalyticsProjectionName,
      topic: options.topic,
      brokers: options.brokers,
      clientId,
    });
  // Reads of the model ask Kafka for the partitions' ends over one connection, opened at the first
  // read and kept (a new one after a failure): an api process does not connect per read. Within a
  // second, reads share one answer, so a busy page does not ask per request either.
  const topicRanges = new KafkaTopicRanges({ topic: options.topic, brokers: options.brokers, clientId });
  let recentEnds: { at: number; ranges: Promise<PartitionRange[]> } | undefined;
  const partitionEnds = (): Promise<PartitionRange[]> => {
    const now = clock.now();
    // A wall clock set back must not keep an answer for as long as it went back.
    if (recentEnds === undefined || now - recentEnds.at > endsMaxAgeMs || now < recentEnds.at) {
      const ranges = topicRanges.ranges();
      recentEnds = { at: now, ranges };
      // A failed look is not kept: the next read asks again.
      ranges.catch(() => {
        if (recentEnds?.ranges === ranges) recentEnds = undefined;
      });
    }
    return recentEnds.ranges;
  };
  return {
    name: options.topic,
    appender: (_db, broker) => broker,
    analyticsRunner: runner,
    close: () => topicRanges.close(),
    async progress(db) {
      const status = runner(db);
      const partitions = await partitionEnds();
      return async (tx) => {
        const stored = await status.position(tx);
        let position = 0;
        let head = 0;
        for (const { partition, start, end } of partitions) {
          position += Number(stored.get(partition) ?? start);
          head += Number(end);
        }
        return { position, head: Math.max(position, head) };
      };
    },
  };
}
