// The order stream as a Kafka topic. Imports the Kafka adapter: load this file only when the shop
// runs on Kafka (presets/order-stream-config.ts imports it on demand).
import type { Db } from '../../../src/db/index.ts';
import {
  KafkaProjectionRunner,
  type KafkaEntry,
  type PartitionRange,
} from '../../../src/messaging/adapters/kafka/index.ts';
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
}

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
export function kafkaOrderStream(options: KafkaOrderStreamOptions): OrderStream {
  const runner = (
    db: Db,
    { onSkipped, ...settings }: OrderAnalyticsRunnerOptions = {},
  ): KafkaProjectionRunner =>
    new KafkaProjectionRunner(db, orderAnalyticsProjection(kafkaPlace, onSkipped), {
      ...settings,
      name: orderAnalyticsProjectionName,
      topic: options.topic,
      brokers: options.brokers,
      clientId: options.clientId ?? 'shop',
    });
  // Each read of the model asks Kafka for the partitions' ends, on a connection of its own: within
  // a second, reads share one answer, so a busy page does not open a connection per request.
  let recentEnds: { at: number; ranges: Promise<PartitionRange[]> } | undefined;
  const partitionEnds = (status: KafkaProjectionRunner): Promise<PartitionRange[]> => {
    const now = performance.now();
    if (recentEnds === undefined || now - recentEnds.at > 1000) {
      const ranges = status.partitions();
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
    async progress(db) {
      const status = runner(db);
      const partitions = await partitionEnds(status);
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
