export { RabbitMqBroker, type RabbitMqBrokerOptions } from './rabbitmq-broker.ts';
export type { RabbitMqConnectionOptions } from './connection-options.ts';
export { RabbitMqSource, type RabbitMqDelivery } from './rabbitmq-source.ts';
export {
  RabbitMqStreamBroker,
  type RabbitMqStreamBrokerOptions,
  type StreamSourceOptions,
} from './rabbitmq-stream-broker.ts';
export {
  RabbitMqStreamSource,
  type RabbitMqStreamDelivery,
  type StreamPosition,
} from './rabbitmq-stream-source.ts';
export type { StreamRetention } from './stream-topology.ts';
export { fnv1a32, partitionOf, partitionQueueName } from './partitions.ts';
export { delayBucket, type QueueType } from './topology.ts';
