export { KafkaBroker, defaultGroup, type RecordPosition, type ReplayOptions } from './kafka-broker.ts';
export type { KafkaBrokerOptions } from './kafka-options.ts';
export type { KafkaDelivery, KafkaSource } from './kafka-source.ts';
export { keelHeaders as kafkaKeelHeaders } from './record-codec.ts';
