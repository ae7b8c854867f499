export { RabbitMqBroker, type RabbitMqBrokerOptions } from './rabbitmq-broker.ts';
export { RabbitMqSource, type RabbitMqDelivery } from './rabbitmq-source.ts';
export { fnv1a32, partitionOf, partitionQueueName } from './partitions.ts';
export { delayBucket, type QueueType } from './topology.ts';
