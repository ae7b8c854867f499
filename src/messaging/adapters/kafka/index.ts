export {
  KafkaBroker,
  defaultGroup,
  type KafkaBrokerOptions,
  type RecordPosition,
  type ReplayOptions,
} from './kafka-broker.ts';
export type { KafkaDelivery, KafkaSource } from './kafka-source.ts';
export { keelHeaders as kafkaKeelHeaders } from './record-codec.ts';
