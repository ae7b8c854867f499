import { orderEventsStream } from '../contracts/order-events.ts';
import { pgOrderStream, type OrderStream } from '../analytics/order-stream.ts';
import type { BrokerConfig } from './broker-config.ts';
import { importAdapter } from './open-broker.ts';

/**
 * Where the order stream lives for a broker configuration. With the queues on Kafka it is a topic
 * on the same cluster, `shop.order-events` under the broker's prefix (the name the broker
 * publishes it under), and the analytics model replays the topic; on every other broker, and on
 * keel's PostgreSQL queue, it is keel's PostgreSQL stream in the shop's database. The Kafka side
 * is imported only when chosen, as the broker's client is.
 */
export async function openOrderStream(config: BrokerConfig): Promise<OrderStream> {
  if (config.kind !== 'kafka') return pgOrderStream;
  const { kafkaOrderStream } = await importAdapter(
    () => import('../analytics/kafka-order-stream.ts'),
    '@platformatic/kafka',
  );
  return kafkaOrderStream({
    brokers: config.url.split(','),
    topic: (config.prefix ?? '') + orderEventsStream,
  });
}
